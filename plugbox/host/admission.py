"""Whether a plugin may run: its pinned sha256 before any worker starts, its Handshake
against the version pins, a strict sandbox and the identity it was registered with, and
a worker's own refusal."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from ..errors import PluginIntegrityError, PluginLoadError, PluginVersionError
from ..limits import Sandbox
from ..protocol import Error, Handshake
from ..trust import integrity
from ..trust.pins import Found
from .options import PluginOptions
from .worker_process import WorkerProcess


async def check_integrity(options: PluginOptions) -> None:
    """The host's check of a pinned sha256, before any worker starts; it reads the
    plugin's files without importing them (``plugbox.trust.integrity``)."""
    expected = options.sha256
    if expected is None:
        return
    ref = options.ref
    try:
        actual = await anyio.to_thread.run_sync(integrity.digest, ref)
    except LookupError as exc:
        raise PluginLoadError(ref, f"cannot check its sha256: {exc}") from None
    except OSError as exc:
        raise PluginLoadError(ref, f"cannot check its sha256: {exc}") from None
    if actual != expected:
        try:
            what = integrity.locate(ref).describe()
        except LookupError:  # pragma: no cover - it was just located
            what = ""
        raise PluginIntegrityError(ref, expected, actual, checked_by="host", what=what)


def missing_layers(sandbox: Sandbox, layers: Mapping[str, bool]) -> list[str]:
    """The sandbox layers ``sandbox`` asks for that ``layers`` lacks."""
    return [
        layer for layer in sandbox.requested_layers(root=os.geteuid() == 0) if not layers.get(layer)
    ]


async def admit(options: PluginOptions, worker: WorkerProcess, hello: Handshake) -> None:
    """Refuse the plugin ``hello`` describes unless ``options`` admit it: with a strict
    sandbox every requested layer must be in force (PluginLoadError), and every version
    pin met (PluginVersionError). A refused worker is stopped and reaped first, so that
    ``add()`` fails with nothing left; one refused for its version has no hook called,
    not even ``close()``."""
    sandbox = options.sandbox
    missing = missing_layers(sandbox, hello.layers) if sandbox.strict else []
    if missing:
        await worker.shutdown(0)
        await worker.wait_reaped()
        raise PluginLoadError(
            options.ref,
            (
                f"strict sandbox: layer {missing[0]!r} is not in force on this system "
                f"(missing: {', '.join(missing)})"
            ),
        )
    if not options.pins:
        return
    found = Found(hello.version, hello.dist_name, hello.dist_version)
    for pin in options.pins:
        problem = pin.problem(found)
        if problem is not None:
            worker.kill(None)
            await worker.wait_reaped()
            raise PluginVersionError(options.ref, pin.spec, found.as_dict(), problem)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a plugin is: its name and version, and its distribution's when reported.
    Fixed by the first Handshake (at ``host.add``); every later worker must repeat it."""

    name: str
    version: str
    dist_name: str
    dist_version: str

    @classmethod
    def of(cls, hello: Handshake) -> Identity:
        """The identity ``hello`` claims."""
        return cls(hello.plugin, hello.version, hello.dist_name, hello.dist_version)


#: how much of a claimed name or version a report quotes (the worker chose its length)
_QUOTED = 80


def same_identity(registered: Identity | None, worker: WorkerProcess, hello: Handshake) -> bool:
    """Whether ``hello`` repeats the identity the plugin was registered with (always, for
    the first Handshake: ``registered`` None). A restarted worker that claims another
    name, version or distribution is killed, cause ``protocol``: a plugin cannot take
    another's name, and its failures stay its own. A call sent with Resume is never
    answered, as the worker is not adopted."""
    if registered is None:
        return True
    problem = changed_identity(registered, Identity.of(hello))
    if problem is not None:
        worker.kill("protocol", problem)
    return problem is None


def changed_identity(registered: Identity, claimed: Identity) -> str | None:
    """What ``claimed`` changes of ``registered``, in words; None if nothing."""
    if claimed == registered:
        return None
    fields = ("name", "version", "dist_name", "dist_version")
    what = [f for f in fields if getattr(claimed, f) != getattr(registered, f)]
    said = ", ".join(f"{f} {_quote(getattr(claimed, f))}" for f in what)
    was = ", ".join(f"{f} {_quote(getattr(registered, f))}" for f in what)
    return f"a restarted worker's Handshake claims {said}, but the plugin was registered with {was}"


def _quote(text: str) -> str:
    quoted = repr(text)
    return quoted if len(quoted) <= _QUOTED else f"{quoted[:_QUOTED]}... ({len(text)} chars)"


def may_call_before_handshake(options: PluginOptions, worker: WorkerProcess) -> bool:
    """Whether a call may go to a resumed standby before its Handshake: only when
    the Handshake cannot refuse the plugin. A version pin is checked on it (and a
    refused version must never have a hook called); a strict sandbox on the layers,
    which the Handshake must repeat from Confined, so those are known already."""
    if options.pins:
        return False
    if not options.sandbox.strict:
        return True
    confined = worker.confined
    return confined is not None and not missing_layers(options.sandbox, confined.layers)


def load_refusal(options: PluginOptions, error: Error) -> PluginLoadError:
    """The exception for the worker's answer to Start, ``error``: PluginIntegrityError,
    from the fields it sends as data, when its own sha256 check failed; otherwise a
    PluginLoadError with the worker's reason."""
    ref = options.ref
    details = error.details
    if error.exc_type == "PluginIntegrityError" and "actual" in details and "what" in details:
        expected = options.sha256 or details.get("expected", "?")
        return PluginIntegrityError(
            ref, expected, details["actual"], checked_by="worker", what=details["what"]
        )
    reason = (
        error.message
        if error.exc_type == "PluginLoadError"
        else f"{error.exc_type}: {error.message}"
    )
    return PluginLoadError(ref, reason + (f"\n{error.traceback}" if error.traceback else ""))
