"""A worker's life: confine, load the plugin, initialize it, shake hands, serve, exit.

Entered from ``python -m plugbox.worker`` (fresh interpreter) or from a zygote fork.
Everything up to the import of the plugin's code happens with plugbox's code only.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from ..errors import PluginIntegrityError
from ..protocol import (
    CHANNEL_FD,
    EXIT_INTERNAL,
    EXIT_MEMORY,
    HEADER_SIZE,
    HOST_TO_WORKER,
    LOAD_CALL_ID,
    PROTOCOL_VERSION,
    ChannelState,
    Confined,
    Error,
    FrameDecoder,
    FrameLimits,
    Handshake,
    Message,
    Resume,
    Start,
    encode,
)
from . import lean, loader, refusals, rehearsal
from .replies import ChannelLogHandler, error_reply
from .sandbox import layers as sandbox
from .sandbox import process as confine
from .sandbox import reads
from .serve import serve, waiting


def run(
    channel_fd: int,
    parent: int,
    stdout_fd: int | None = None,
    stderr_fd: int | None = None,
    exit_report_fd: int | None = None,
) -> NoReturn:
    """Run a worker on ``channel_fd`` and exit the process with its status.

    ``exit_report_fd``, a pipe to the host, goes to the init of the worker's pid
    namespace, which reports the plugin's end on it (``protocol._exit_report``); the
    plugin's process closes it before anything of the plugin runs."""
    try:
        code = _run(channel_fd, parent, stdout_fd, stderr_fd, exit_report_fd)
    except MemoryError:
        os._exit(EXIT_MEMORY)
    except KeyboardInterrupt:
        _die_of_sigint()
    except BaseException:
        try:
            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(EXIT_INTERNAL)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _die_of_sigint() -> NoReturn:
    """End as killed by SIGINT: a SIGINT outside the plugin's hooks (native code, a
    thread of the plugin's raising it) is the plugin's crash, not plugbox's failure."""
    try:
        print(
            "plugbox worker: SIGINT (KeyboardInterrupt) outside a hook: the worker ends "
            "as killed by it",
            file=sys.stderr,
        )
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.raise_signal(signal.SIGINT)
        os._exit(128 + signal.SIGINT)  # (not reached: SIGINT's default action ends it)


def prepare() -> None:
    """Do, once, in the zygote before it forks workers, what every worker would
    otherwise do for itself after its fork with the same result (``sandbox.prepare``),
    and run the code each worker runs to make its event loop a few times: asyncio sets
    up its policy and caches on first use, and a just-forked process pays for every
    page it first writes, so what the zygote has done already costs each worker less
    (its event loop is still its own, made after its namespaces)."""
    sandbox.prepare()
    reads.prepare()
    for _ in range(3):
        loop = asyncio.new_event_loop()
        loop.close()
    asyncio.get_event_loop_policy()


def _receive_start(sock: socket.socket, order: ChannelState) -> Start:
    msg = _receive(sock, order)
    if msg is None:
        raise EOFError("the host closed the channel before sending Start")
    assert isinstance(msg, Start)
    return msg


def _await_resume(sock: socket.socket, order: ChannelState) -> bool:
    """A standby worker's wait: True when the host sends Resume, False when it sends
    Shutdown or closes the channel (the worker is not needed)."""
    return isinstance(_receive(sock, order), Resume)


def _receive(sock: socket.socket, order: ChannelState) -> Message | None:
    """The next message, which ``order`` must allow; None at end of channel. Nothing
    after it is read: a Call the host sends right behind Resume is left in the socket
    for ``serve``."""
    decoder = FrameDecoder(peer="host", accept=HOST_TO_WORKER)
    header = _read_exactly(sock, HEADER_SIZE)
    if header is None:
        return None
    decoder.feed(header, time.monotonic())
    decoder.next_message()  # refuses a declared length over the cap before it is read
    body = _read_exactly(sock, int.from_bytes(header, "big"))
    if body is None:
        return None
    decoder.feed(body, time.monotonic())
    msg = decoder.next_message()
    assert msg is not None  # (a whole frame was fed)
    order.process("host", msg)
    return msg


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes from the blocking ``sock``, or None if it ends first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data), socket.MSG_WAITALL)
        if not chunk:
            return None
        data += chunk
    return data


def _redirect_stdio(stdout_fd: int | None, stderr_fd: int | None) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd, target in ((stdout_fd, 1), (stderr_fd, 2)):
        if fd is not None and fd != target:
            os.dup2(fd, target)
            os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and hasattr(stream, "reconfigure"):
            stream.reconfigure(line_buffering=True)


def _discard(frame: bytes) -> None:
    """Where log records go once the channel is closed."""


class _Sender:
    """Where log records go: the socket before the loop runs, the transport after."""

    def __init__(self, sock: socket.socket) -> None:
        self.send: Callable[[bytes], None] = sock.sendall

    def __call__(self, frame: bytes) -> None:
        self.send(frame)


def _run(
    channel_fd: int,
    parent: int,
    stdout_fd: int | None,
    stderr_fd: int | None,
    exit_report_fd: int | None,
) -> int:
    in_session = confine.new_session()
    _redirect_stdio(stdout_fd, stderr_fd)
    faulthandler.enable()  # a fatal signal leaves the plugin's traceback on stderr
    if exit_report_fd == CHANNEL_FD:  # out of the channel's way
        exit_report_fd = os.dup(exit_report_fd)
        os.close(CHANNEL_FD)
    if channel_fd != CHANNEL_FD:  # the channel always sits at fd 3
        os.dup2(channel_fd, CHANNEL_FD, inheritable=False)
        os.close(channel_fd)
    sock = socket.socket(fileno=CHANNEL_FD)
    sock.setblocking(True)
    order = ChannelState("worker")
    start = _receive_start(sock, order)
    if start.sandbox.get("network"):
        lean.give_asyncio_ssl()  # TLS for a plugin that may use the network

    def fail(exc: BaseException) -> int:
        reply = error_reply(LOAD_CALL_ID, exc)
        if isinstance(exc, PluginIntegrityError):  # its fields cross as data
            details = {"what": exc.what, "expected": exc.expected, "actual": exc.actual}
            reply = Error(
                id=LOAD_CALL_ID,
                exc_type="PluginIntegrityError",
                message=exc.reason,
                details=details,
            )
        elif isinstance(exc, loader.LoadError):
            reply = Error(id=LOAD_CALL_ID, exc_type="PluginLoadError", message=str(exc))
        order.process("worker", reply)
        sock.sendall(encode(reply, side="worker"))
        return 0

    expected_sha256 = start.sha256
    dist_name = dist_version = ""
    try:
        source = loader.parse_ref(start.ref, start.inline)
        if expected_sha256 is not None and source.text is not None:
            # the very bytes that will be compiled, read once above
            loader.verify_text(source, expected_sha256)
        if start.distribution and source.module is not None:
            # metadata only, read while the whole import path is still there
            dist_name, dist_version = loader.distribution_of(source.module)
    except Exception as exc:  # LoadError, PluginIntegrityError, unreadable metadata
        return fail(exc)

    state = confine.Confinement()
    state.layers["new_session"] = in_session
    confine.close_other_fds(sock.fileno(), exit_report_fd)
    state.layers["fds_closed"] = True
    confine.scrub_environment()
    for key, value in (start.sandbox.get("env") or {}).items():
        os.environ[str(key)] = str(value)
    state.layers["clean_environment"] = True
    # what the worker may read: given, not inherited from the import path
    read_only = start.sandbox.get("read_only") or ()
    processes = bool(start.sandbox.get("processes"))
    grants = reads.plan(source.path, source.module, read_only, source.inline, processes)
    import_paths = confine.ImportPaths(grants.open_dirs) if os.geteuid() == 0 else None
    state.layers["oom_score_adj"] = sandbox.raise_oom_score()
    state.layers["unprivileged"] = confine.drop_privileges(start.sandbox.get("user"))
    grants.install()
    state.layers["parent_death_signal"] = confine.die_with_parent(parent)
    # may fork: see worker.pidns; init keeps the exit report pipe, the plugin does not
    namespaces, host_pid = sandbox.enter(start.sandbox, exit_report_fd, grants.trees)
    if import_paths is not None:  # after the interpreter's directories were mounted
        import_paths.after_drop()
        grants.relocate(import_paths.fix)
    if exit_report_fd is not None:
        os.close(exit_report_fd)
    state.layers.update(namespaces)
    loop = asyncio.new_event_loop()  # its fds (epoll, self-pipe) exist before seccomp
    asyncio.set_event_loop(loop)
    if source.inline is not None:
        loader.prepare_inline()  # its import opens /dev/null for writing
    state.layers.update(sandbox.apply(start.sandbox, grants.grants, namespaces))
    confine.apply_rlimits(start.limits, state)
    refusals.install(start.sandbox, start.limits, state.layers)  # words what is refused
    baseline_rss = confine.baseline_kb(state)
    # the layers and the RSS as they stand before any of the plugin's code runs: the
    # Handshake comes after it ran, so the host holds the Handshake to these
    confined = Confined(layers=dict(state.layers), pid=host_pid, baseline_rss_kb=baseline_rss)
    order.process("worker", confined)
    sock.sendall(encode(confined, side="worker"))
    standby = start.standby
    if standby:
        loader.precompile(source)  # while waiting: it runs nothing of the plugin
        rehearsal.rehearse(loop, start.hooks, dict(state.layers), host_pid, source)
    # the plugin's log records go to the host; set up before a standby waits (nothing
    # runs while it waits), so that a restart that resumes it does not wait on it
    sender = _Sender(sock)
    handler = ChannelLogHandler(sender)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(start.log_level)
    max_message_mb = start.limits.get("max_message_mb", confine.DEFAULT_LIMITS.max_message_mb)
    limits = FrameLimits(max_frame_bytes=int(max_message_mb) << 20)
    if standby and not _await_resume(sock, order):
        return 0  # a standby worker the host did not need: none of the plugin's code ran

    try:
        # plugbox's code only, before the plugin's: its code cannot have tampered yet
        if expected_sha256 is not None and source.module is not None:
            loader.verify_module(source, expected_sha256, start.sandbox.get("scratch"))
        instance = loader.instantiate(source)
        refusals.name_plugin(loader.plugin_name(instance))
        if start.config is not None and start.initialize:
            init = getattr(instance, "initialize", None)
            if callable(init):
                result = init(dict(start.config))
                if asyncio.iscoroutine(result):
                    loop.run_until_complete(result)
        plugin = loader.check(instance, start.hooks)  # after initialize: it may add hooks
    except MemoryError as exc:
        state.reserve = None  # room for the error reply
        return fail(exc)
    except BaseException as exc:  # a KeyboardInterrupt or SystemExit too: the plugin's
        return fail(exc)

    confine.plugin_loaded(state)
    name = getattr(plugin.instance, "name", None)  # initialize may have set it
    if isinstance(name, str) and name:
        plugin.name = name
    mutable = {hook: frozenset(spec.get("mutable", ())) for hook, spec in start.hooks.items()}
    hello = Handshake(
        protocol=PROTOCOL_VERSION,
        plugin=plugin.name,
        version=plugin.version,
        hooks=plugin.hooks,
        pid=host_pid,
        problems=plugin.problems,
        baseline_rss_kb=baseline_rss,
        layers=state.layers,
        dist_name=dist_name,
        dist_version=dist_version,
    )
    order.process("worker", hello)
    sock.sendall(encode(hello, side="worker"))
    early = waiting(sock)  # a call sent right behind Resume: answered before the loop runs

    def install_log(send: Any) -> None:
        sender.send = send

    try:
        return loop.run_until_complete(
            serve(sock, plugin, mutable, state, limits, install_log, early, order)
        )
    finally:
        sender.send = _discard
