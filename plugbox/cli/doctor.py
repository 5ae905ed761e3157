"""``plugbox doctor``: which sandbox layers this system offers, and which a worker had.

Two columns per layer, both measured rather than guessed:

- **kernel**: whether this system offers the layer. Cheap probes: Landlock's ABI
  version, a forked child that installs a trivial seccomp filter
  (``seccomp.supported()``), and a forked child that does what a worker does before
  its plugin is imported (raise its OOM score, drop to the worker's user, set the
  parent-death signal, enter user, IPC, network, mount and pid namespaces, cap its
  inotify use and threads there, set no_new_privs).
- **worker**: whether a real worker, started by a ``PluginHost`` with the default
  ``Sandbox``, reported the layer in force in its handshake (``PluginInfo.layers``).

The probe worker runs the built-in plugin ``plugbox.plugins.probe``, which also tries
three things the sandbox must refuse (a TCP connection to a listener on 127.0.0.1, a
file written outside its scratch directory, a fork) and reports how each went.

``diagnose()`` returns a ``Diagnosis``; ``plugbox doctor`` (``doctor_command``) prints
it (``render``) or its JSON (``to_json``). ``worker_layers()`` is the quick part
alone: one worker start, its layers (the test suite prints them in its header).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import signal
import socket
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any

from .codes import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_STATUS

#: every layer a worker reports, in the order it applies them, with what it does
LAYERS: dict[str, str] = {
    "new_session": "own session and process group (setsid)",
    "fds_closed": "every inherited fd closed but the channel",
    "clean_environment": "environment scrubbed: no host variables or secrets",
    "unprivileged": "an unprivileged uid (a root host's workers become Sandbox.user)",
    "parent_death_signal": "SIGKILL when its parent dies (PR_SET_PDEATHSIG)",
    "oom_score_adj": "the OOM killer takes the worker before its host",
    "user_namespace": "own user namespace: no capability over anything outside it",
    "inotify_limit": "inotify instances and watches capped in its own user namespace",
    "ipc_namespace": "own IPC namespace: no SysV IPC or POSIX queues of the host",
    "network_namespace": "own network namespace, without interfaces",
    "mount_namespace": "own mount namespace, with a /proc of its pid namespace's own",
    "pid_namespace": "own pid namespace under a minimal init: no host process in sight, "
    "and whatever the plugin starts dies with it",
    "scratch_tmpfs": "scratch is a private tmpfs of Limits.scratch_mb, counted as memory "
    "and gone with the worker",
    "no_new_privs": "no privileges gained through execve (PR_SET_NO_NEW_PRIVS)",
    "landlock_filesystem": "Landlock: filesystem read-only but the scratch directory",
    "landlock_tcp": "Landlock: TCP bind and connect denied (ABI 4+)",
    "landlock_signals": "Landlock: signals only within the sandbox (ABI 6+)",
    "landlock_abstract_unix": "Landlock: abstract unix sockets only within it (ABI 6+)",
    "seccomp": "seccomp: no ptrace, foreign signals, new processes, inet sockets",
    "rlimits": "rlimits: private memory, address space, CPU, files, stack, no core dumps",
    "thread_limit": "threads and processes capped in its own user namespace (Limits.threads)",
}

#: what the probe plugin tries, in words
ACTIONS: dict[str, str] = {
    "tcp_connect": "TCP connect to a listener on 127.0.0.1",
    "write_outside_scratch": "write a file outside the scratch directory",
    "fork": "fork a child process",
}

PROBE_PLUGIN = "plugbox.plugins.probe"


@dataclass(frozen=True)
class Layer:
    """One layer: offered by this system (``kernel``), in force in the probe worker
    (``worker``; None when no worker could be probed)."""

    name: str
    description: str
    kernel: bool
    worker: bool | None


@dataclass
class Diagnosis:
    """What ``plugbox doctor`` found."""

    system: dict[str, Any]
    layers: list[Layer]
    actions: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str | None = None

    @property
    def missing(self) -> list[str]:
        """Layers not in force in the probe worker (all of them if none ran)."""
        return [layer.name for layer in self.layers if not layer.worker]

    @property
    def got_through(self) -> list[str]:
        """Probe actions the sandbox did not refuse."""
        return [name for name, result in self.actions.items() if not result.get("refused")]

    @property
    def ok(self) -> bool:
        """Every layer in force and every probe action refused."""
        return self.error is None and not self.missing and not self.got_through

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "layers": {
                layer.name: {
                    "kernel": layer.kernel,
                    "worker": layer.worker,
                    "description": layer.description,
                }
                for layer in self.layers
            },
            "probe": self.actions,
            "missing": self.missing,
            "got_through": self.got_through,
            "error": self.error,
            "ok": self.ok,
        }

    def render(self) -> str:
        s = self.system
        lines = [
            f"plugbox doctor: {s['system']} {s['release']} ({s['machine']}), Python {s['python']}",
            f"host euid {s['euid']}: workers run as "
            f"{repr(s['worker_user']) if s['worker_user'] else 'the host uid'}; "
            f"Landlock ABI {s['landlock_abi'] or 'absent'}; seccomp filters "
            f"{'supported' if s['seccomp'] else 'unsupported'}",
            "",
        ]
        width = max(len(name) for name in LAYERS)
        lines.append(f"{'layer':<{width}}  kernel  worker  what it does")
        for layer in self.layers:
            worker = "?" if layer.worker is None else "on" if layer.worker else "OFF"
            kernel = "yes" if layer.kernel else "no"
            lines.append(f"{layer.name:<{width}}  {kernel:<6}  {worker:<6}  {layer.description}")
        lines.append("")
        if self.error is not None:
            lines.append(f"the probe worker could not be run: {self.error}")
        else:
            lines.append("a probe worker tried what the sandbox must refuse:")
            for name, result in self.actions.items():
                verdict = "refused" if result.get("refused") else "GOT THROUGH"
                lines.append(
                    f"  {ACTIONS.get(name, name):<44}  {verdict:<11}  {result.get('detail', '')}"
                )
        lines.append("")
        if self.ok:
            lines.append(f"all {len(self.layers)} layers in force; every probe refused.")
        else:
            if self.missing and self.error is None:
                lines.append(f"not in force: {', '.join(self.missing)}")
            if self.got_through:
                lines.append(f"got through: {', '.join(self.got_through)}")
        return "\n".join(lines)


# --- the kernel's side ------------------------------------------------------------------------
def _in_child(user: str | None) -> dict[str, bool]:
    """In a forked child, what a worker does to itself before its plugin is imported;
    report which steps took."""
    from ..limits import Limits
    from ..worker import _linux
    from ..worker.sandbox import layers as sandbox
    from ..worker.sandbox import process as confine
    from ..worker.sandbox import quotas, seccomp

    done: dict[str, bool] = {}
    done["oom_score_adj"] = sandbox.raise_oom_score()
    try:
        done["unprivileged"] = confine.drop_privileges(user)
    except (KeyError, OSError):
        done["unprivileged"] = False
    done["parent_death_signal"] = _linux.set_parent_death_signal(signal.SIGKILL)
    done.update(sandbox.enter({"network": False, "scratch_mb": 1})[0])
    done["thread_limit"] = quotas.limit_threads(Limits().threads, done.get("user_namespace", False))
    try:
        seccomp.set_no_new_privs()
        done["no_new_privs"] = True
    except OSError:
        done["no_new_privs"] = False
    return done


def _forked_probe(user: str | None) -> dict[str, bool]:
    if not hasattr(os, "fork"):
        return {}
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
        pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, json.dumps(_in_child(user)).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        chunks = []
        while chunk := os.read(r, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    try:
        result = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {}
    return {str(k): bool(v) for k, v in result.items()}


def kernel_offers(user: str | None = "nobody") -> tuple[dict[str, bool], dict[str, Any]]:
    """Which layers this system offers (cheap probes; this process is left as it was),
    and the facts behind them (Landlock ABI, seccomp support)."""
    from ..worker.sandbox import landlock, seccomp

    linux = sys.platform.startswith("linux")
    abi = landlock.abi_version() if linux else 0
    filters = seccomp.supported()
    offers = {name: False for name in LAYERS}
    offers.update(
        {
            "new_session": hasattr(os, "setsid"),
            "fds_closed": True,
            "clean_environment": True,
            "rlimits": True,
            "landlock_filesystem": abi >= 1,
            "landlock_tcp": abi >= 4,
            "landlock_signals": abi >= 6,
            "landlock_abstract_unix": abi >= 6,
            "seccomp": filters,
        }
    )
    offers.update({k: v for k, v in _forked_probe(user).items() if k in offers})
    return offers, {"landlock_abi": abi, "seccomp": filters}


# --- a worker's side ------------------------------------------------------------------------
async def probe_worker(
    *, actions: bool = True, launcher: str = "zygote", timeout: float = 20.0
) -> tuple[dict[str, bool], dict[str, Any]]:
    """Start a worker with the default Sandbox; return the layers it reported and, with
    ``actions``, what the probe plugin's attempts came to."""
    import anyio

    from ..host import PluginHost
    from ..specs import HookSet, HookSpec

    hooks = HookSet("doctor", [HookSpec(name="probe", args=(), mode="first_result")])
    outside = tempfile.mkdtemp(prefix="plugbox-doctor-")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        os.chmod(outside, 0o777)  # only the sandbox may keep the worker out
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        config = {"port": listener.getsockname()[1], "outside": outside}
        with anyio.fail_after(timeout):
            async with PluginHost(hooks, launcher=launcher) as host:
                info = await host.add(PROBE_PLUGIN, config=config)
                found: dict[str, Any] = {}
                if actions:
                    found = dict((await host.call("probe")).value["actions"])
        return dict(info.layers), found
    finally:
        listener.close()
        shutil.rmtree(outside, ignore_errors=True)


def worker_layers(timeout: float = 20.0) -> dict[str, bool]:
    """The layers a freshly started worker reports in force (one worker start)."""
    import anyio

    layers, _ = anyio.run(functools.partial(probe_worker, actions=False, timeout=timeout))
    return layers


def diagnose(timeout: float = 20.0) -> Diagnosis:
    """Probe the kernel and a worker (blocking: runs its own event loop)."""
    import anyio

    from ..limits import Sandbox

    user = Sandbox().user
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    offers, facts = kernel_offers(user if root else None)
    if not root:
        offers["unprivileged"] = True  # the workers run as this unprivileged uid
    system = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "euid": os.geteuid() if hasattr(os, "geteuid") else None,
        "worker_user": user if root else None,
        **facts,
    }
    error = None
    reported: dict[str, bool] = {}
    actions: dict[str, Any] = {}
    try:
        reported, actions = anyio.run(functools.partial(probe_worker, timeout=timeout))
    except TimeoutError:
        error = f"no answer within {timeout:g} s"
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    names = list(LAYERS) + [name for name in reported if name not in LAYERS]
    layers = [
        Layer(
            name,
            LAYERS.get(name, ""),
            offers.get(name, False),
            None if error else bool(reported.get(name)),
        )
        for name in names
    ]
    return Diagnosis(system=system, layers=layers, actions=actions, error=error)


DOCTOR_HELP = """\
For each sandbox layer: whether this system offers it (cheap kernel probes) and
whether a real worker, started with the default Sandbox, reported it in force. The
probe worker also tries three things the sandbox must refuse (a TCP connection to
127.0.0.1, a file written outside its scratch directory, a fork) and says how each
went.
"""


def register(subparsers: Any) -> None:
    """Register ``doctor`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "doctor",
        help="show which sandbox layers this system offers and a worker has",
        description=DOCTOR_HELP,
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="print the diagnosis as one JSON object"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 unless every layer is in force in the probe worker "
        "and every probe was refused",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="give up on the probe worker after this long (default 20)",
    )
    parser.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    """``plugbox doctor``: print the diagnosis; ``EXIT_ERROR`` when no probe worker
    could be run, ``EXIT_FAILED`` under ``--strict`` when something is missing."""
    diagnosis = diagnose(timeout=args.timeout)
    if args.json:
        print(json.dumps(diagnosis.to_json(), indent=2))
    else:
        print(diagnosis.render())
    if diagnosis.error is not None:
        print(f"plugbox doctor: no probe worker could be run: {diagnosis.error}", file=sys.stderr)
        return EXIT_ERROR
    if args.strict and not diagnosis.ok:
        problems = [
            *(f"layer {name} not in force" for name in diagnosis.missing),
            *(f"{name} got through" for name in diagnosis.got_through),
        ]
        print(f"plugbox doctor --strict: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
