"""One live worker as the host sees it: its lifecycle, and the routing of its calls.

Replies are routed by call id from one reader task; sends go straight to the socket
when it can take them and otherwise through one writer task that batches what is
queued, so no call waits on a lock. Death is noticed by events only: the channel's
EOF, or the launcher reaping the process (``death``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc

from ..limits import Limits
from ..protocol import (
    LOAD_CALL_ID,
    MAX_EXPANSION,
    WORKER_TO_HOST,
    Cancel,
    ChannelState,
    Confined,
    Error,
    FrameDecoder,
    FrameLimits,
    Handshake,
    HostPhase,
    Log,
    Message,
    ProtocolError,
    Result,
    Resume,
    Shutdown,
    Start,
    encode,
    encode_call,
    pack,
)
from ..reports import Cause
from .causes import Death, is_memory_error
from .channel import open_channel
from .death import DeathWatch
from .exits import ExitInfo
from .launchers import SpawnedWorker
from .output import WorkerOutput, pause_after
from .pending import EXPIRED, Pending, deadlines_for_running_loop
from .tasks import HostTasks
from .usage import watch_usage


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The call passed its deadline (the worker has been killed)."""

    timeout: float


class WorkerProcess:
    """The host's handle on one worker process: starts, loads and closes it, and
    routes its calls. Its end is ``DeathWatch``'s, its output ``WorkerOutput``'s."""

    def __init__(
        self, spawned: SpawnedWorker, *, label: str, limits: Limits, logger: logging.Logger
    ) -> None:
        self.spawned = spawned
        self.label = label
        self.registered_as: str | None = None  # a restart's name: its logs go under it
        self.limits = limits
        self.logger = logger
        #: which message may come next, from either side (``plugbox.protocol``)
        self._order = ChannelState("host")
        self.load_error: Error | None = None
        self.closing = False
        self.reported = False
        self.protocol_error: ProtocolError | None = None
        self.answered = 0
        self.calls = 0
        #: set at the Handshake, the load error or the death, whichever comes first
        self._settled = anyio.Event()
        self._confined = anyio.Event()  # (or died first)
        self._dead = anyio.Event()
        #: not ``_dead.is_set()``: read on every call (``alive``), so kept plain
        self._alive = True
        self._channel_done = anyio.Event()
        self._pending: dict[int, Pending] = {}
        self._next_id = 1
        self.channel = open_channel(spawned.channel)
        self._deadlines = deadlines_for_running_loop(self._call_expired)
        self._decoder = FrameDecoder(
            peer="worker",
            accept=WORKER_TO_HOST,
            limits=FrameLimits(
                max_frame_bytes=limits.max_message_mb << 20, max_expansion=MAX_EXPANSION
            ),
        )
        self._max_frame = limits.max_message_mb << 20
        self.output = WorkerOutput(logger, tail_lines=limits.stderr_tail_lines, plugin=label)
        self.stdout = self.output.stdout
        self.stderr = self.output.stderr
        self.end = DeathWatch(
            spawned,
            limits,
            on_end=self._mark_dead,
            written=(self.output.drained, self._channel_done),
        )

    # ---------------------------------------------------------------- life
    def start(self, tg: HostTasks, start: Start) -> None:
        """Start the reader, writer, output and exit tasks, then send ``start``."""
        self._order.process("host", start)
        tg.start_soon(self._read_channel)
        tg.start_soon(self._deadlines.run)
        self.output.start(tg, self.spawned.stdout, self.spawned.stderr)
        self.end.start(tg, self._dead)
        if self.limits.rss_check_interval and (self.limits.memory_mb or self.limits.cpu_seconds):
            tg.start_soon(watch_usage, self.end, self, self.limits, self._settled, self._dead)
        self.send(encode(start, side="host", max_frame_bytes=self._max_frame))

    def resume(self) -> None:
        """Tell a standby worker (started with ``standby`` in its Start) to load the
        plugin; ``wait_handshake`` then waits for it as for any worker."""
        resume = Resume()
        self._order.process("host", resume)
        self.send(encode(resume, side="host"))

    @property
    def standby(self) -> bool:
        """Whether this is a standby worker not yet told to load the plugin (``resume``)."""
        return self._order.host is HostPhase.STANDBY

    @property
    def confined(self) -> Confined | None:
        """The layers and RSS the worker reported before the plugin's code ran."""
        return self._order.confined

    @property
    def handshake(self) -> Handshake | None:
        """The worker's Handshake, once the plugin has loaded."""
        return self._order.handshake

    async def wait_confined(self) -> bool:
        """Wait until the worker has reported its sandbox (Confined) or died; whether
        it is alive and confined."""
        if not self._confined.is_set():  # (no turn of the loop for what is here)
            await self._confined.wait()
        return self.alive and self.confined is not None

    @property
    def alive(self) -> bool:
        """Whether the worker can still take calls."""
        return self._alive

    @property
    def calls_in_flight(self) -> int:
        """How many calls await their replies."""
        return len(self._pending)

    async def wait_handshake(self, timeout: float) -> Handshake | Error | None:
        """The Handshake, the load Error, or None if the worker died or timed out
        (then ``end.kill_reason`` says which)."""
        if not self._settled.is_set():
            with anyio.move_on_after(timeout):
                await self._settled.wait()
        if self.handshake is not None:
            return self.handshake
        if self.load_error is not None:
            return self.load_error
        if self.alive:
            self.kill("timeout", f"did not finish loading within {timeout:g} s")
        return None

    async def shutdown(self, grace: float) -> None:
        """Ask the plugin to close; kill the worker if it has not exited within ``grace``."""
        self.closing = True
        if self.alive and not self.channel.broken:
            shutdown = Shutdown()
            self._order.process("host", shutdown)
            self.send(encode(shutdown, side="host"))
        with anyio.move_on_after(grace):
            await self.end.ended.wait()
        if self.end.ended.info is None:
            self.logger.warning(
                "plugin did not close within %g s; its worker (pid %d) was killed", grace, self.pid
            )
            self.kill("crashed", f"killed when the host closed it, after a {grace:g} s grace")
            await self.end.ended.wait()
        self._mark_dead()

    def name_logger(self, plugin: str) -> None:
        """Send the worker's logs and output to ``plugbox.plugin.<plugin>``."""
        self.logger = logging.getLogger(f"plugbox.plugin.{plugin}")
        self.output.name_logger(self.logger, plugin)

    # ---------------------------------------------------------------- its end
    def kill(self, reason: Cause | None, detail: str = "") -> None:
        """SIGKILL the worker and its process group; ``reason`` becomes the cause."""
        self.end.kill(reason, detail)

    async def wait_reaped(self) -> ExitInfo:
        """Wait until the launcher has reaped the launched process: then nothing of the
        worker is left (in a pid namespace, its init and the plugin went first)."""
        return await self.spawned.exit.wait()

    async def wait_verdict(self) -> tuple[Cause, str, Death]:
        """(cause, detail, death) once the worker has died and been reaped."""
        return await self.end.wait_verdict()

    @property
    def pid(self) -> int:
        """The process serving the plugin: the launched one, until Confined names another."""
        return self.end.pid

    @property
    def memory_hint(self) -> str | None:
        """The MemoryError a call raised, if one did."""
        return self.end.memory_hint

    # ---------------------------------------------------------------- calls
    def send_call(
        self,
        hook: str,
        args: dict[str, Any],
        packed: Mapping[str, bytes] | None = None,
        timeout: float | None = None,
    ) -> int | None:
        """Send a Call of ``hook`` now; its id for ``reply``, or None if the worker is
        dead. ``packed`` holds the arguments already msgpack-encoded (the host encodes
        each argument once per call, however many plugins receive it). ``timeout``
        starts the call's deadline now rather than when ``reply`` waits. A frame over
        the cap raises LocalProtocolError and nothing is sent."""
        if not self.alive:
            return None
        call_id = self._next_id
        self._next_id += 1
        if packed is None:
            packed = {name: pack(value) for name, value in args.items()}
        frame = encode_call(call_id, hook, packed, side="host", max_frame_bytes=self._max_frame)
        pending = self._pending[call_id] = self._deadlines.pending(hook)
        if timeout is not None:
            pending.arm(timeout)
        self.calls += 1
        if len(self._pending) > 1:  # others in flight: coalesce this turn's sends
            self.channel.write_soon(frame)
        else:
            self.channel.write(frame)
        return call_id

    async def reply(
        self,
        call_id: int | None,
        hook: str,
        timeout: float,
    ) -> Result | Error | TimedOut | None:
        """The reply to call ``call_id`` (``send_call``): a Result or an Error; TimedOut
        if ``timeout`` seconds pass first (the worker is then killed); None if the
        worker died. A caller cancelled while it waits has the worker sent a Cancel."""
        if call_id is None:
            return None
        pending = self._pending.get(call_id)
        if pending is None:
            return None
        try:
            reply = await pending.wait(timeout)
            if reply is EXPIRED:  # (the worker was killed as it expired: _call_expired)
                return TimedOut(timeout)
            return reply
        except anyio.get_cancelled_exc_class():
            self.abandon(call_id)
            raise
        finally:
            self._pending.pop(call_id, None)

    def _call_expired(self, hook: str, timeout: float) -> None:
        """A call's deadline passed unanswered: the worker is killed then, whether or
        not its caller is waiting on the reply yet (an observe hook reads its plugins'
        replies in turn)."""
        self.kill("timeout", f"{hook} did not answer within {timeout:g} s")

    def abandon(self, call_id: int | None) -> None:
        """Give up on call ``call_id`` (``send_call``) without its reply: a worker that
        has yet to answer it is sent a Cancel, and a reply that still comes is dropped."""
        if call_id is None:
            return
        pending = self._pending.pop(call_id, None)
        if pending is None:
            return
        pending.disarm()
        if not pending.done and self.alive and not self.channel.broken:
            cancel = Cancel(id=call_id)
            self._order.process("host", cancel)  # its reply, if one comes, is dropped
            self.send(encode(cancel, side="host"))

    def send(self, frame: bytes) -> None:
        """Send a frame; it never waits (what the socket cannot take now is queued)."""
        self.channel.write(frame)

    # ---------------------------------------------------------------- tasks
    async def _read_channel(self) -> None:
        decoder = self._decoder

        def on_late() -> None:
            decoder.check_deadline(time.monotonic())

        try:
            await self.channel.run(
                self._guard(self._received), decoder.deadline, self._guard(on_late)
            )
        except anyio.ClosedResourceError:
            pass
        self._channel_done.set()
        self._mark_dead()
        self.output.report_drops()

    def _received(self, data: bytes) -> None:
        now = self.output.now = time.monotonic()  # (the Log records' rate limit's clock)
        decoder = self._decoder
        decoder.feed(data, now)
        while (msg := decoder.next_message(now)) is not None:
            self._dispatch(msg)
        if self.output.flooded:  # Log records over the rate limit were dropped: a flood
            self.output.flooded = False
            self.channel.pause(pause_after(now))

    def _guard(self, fn: Callable[..., None]) -> Callable[..., None]:
        """Run ``fn``; a protocol error kills the worker and ends the channel."""

        def guarded(*args: Any) -> None:
            if self.protocol_error is not None:
                return
            try:
                fn(*args)
            except ProtocolError as exc:
                self.protocol_error = exc
                self.kill("protocol", str(exc))
                self.channel.close()

        return guarded

    def _dispatch(self, msg: Message) -> None:
        """Take one message from the worker: a reply to a call in flight resolves it at
        once; everything else goes through the message order (``_lifecycle``)."""
        if isinstance(msg, (Result, Error)):
            pending = self._pending.get(msg.id)
            if pending is not None:
                if isinstance(msg, Error) and is_memory_error(msg.exc_type, msg.chain):
                    self.end.memory_hint = f"{msg.exc_type}: {msg.message}"[:200]
                pending.resolve(msg)
                self.answered += 1
                return
        self._lifecycle(msg)

    def _lifecycle(self, msg: Message) -> None:
        """A message that is not a reply to a call in flight: checked against the
        message order (which raises a ProtocolError if it is out of place), then acted
        on. A reply to a call given up (``abandon``) is dropped."""
        self._order.process("worker", msg)
        if isinstance(msg, Log):
            output, early = self.output, self.handshake is None
            output.record(msg, early=early)
            if output.flooded:  # dropping them: drop the Log frames next in line unread
                output.drop_unread(*self._decoder.drop_logs(), early=early)
        elif isinstance(msg, Confined):
            if msg.pid != self.spawned.pid:
                self.end.adopt(msg.pid)
            self.end.confined(msg.layers)
            self._confined.set()
        elif isinstance(msg, Handshake):
            self.end.baseline_rss_kb = msg.baseline_rss_kb
            self.name_logger(self.registered_as or msg.plugin)
            self.output.replay_early()
            self._settled.set()
        elif isinstance(msg, Error) and msg.id == LOAD_CALL_ID:
            self.load_error = msg
            self._settled.set()

    def _mark_dead(self) -> None:
        if self._dead.is_set():
            return
        if not self.channel.broken and self.protocol_error is None:
            # its end was heard (its exit status, or the host's own kill) before the
            # reader took all it had written: the rest is in the socket, unread. A reply
            # among it answers its call, which would otherwise fail with the death.
            unread = self.channel.unread()
            if unread:
                self._guard(self._received)(unread)
            if self._dead.is_set():  # (a protocol error in it ended the worker already)
                return
        self._alive = False
        self._dead.set()
        self._settled.set()
        self._confined.set()
        self.channel.close()
        self._deadlines.stop()
        for pending in list(self._pending.values()):
            pending.resolve(None)
