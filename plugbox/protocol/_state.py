"""The order of messages on a worker's channel, for both ends: which message each side
may send in each phase, as tables, and what a Handshake must agree with. No I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final, Literal, NoReturn, TypeAlias

from ._errors import LocalProtocolError, RemoteProtocolError
from ._messages import (
    LOAD_CALL_ID,
    PROTOCOL_VERSION,
    Call,
    Cancel,
    Confined,
    Error,
    Handshake,
    Log,
    Message,
    Result,
    Resume,
    Shutdown,
    Start,
)

Side: TypeAlias = Literal["host", "worker"]
HOST: Final = "host"
WORKER: Final = "worker"


class HostPhase(enum.Enum):
    """Where the host is in a worker's life, which decides what it may send next."""

    START = "start"  # nothing sent yet: the Start comes first
    STANDBY = "standby"  # its Start asked the worker to hold: Resume, or Shutdown
    RUNNING = "running"  # the plugin is loading or loaded: calls
    CLOSED = "closed"  # a holding worker told to exit


class WorkerPhase(enum.Enum):
    """Where a worker is in its life, which decides what it may send next."""

    IDLE = "idle"  # no Start yet
    CONFINING = "confining"  # the Start taken, its sandbox going on
    CONFINING_STANDBY = "confining to hold"  # the same, for a worker that will hold
    STANDBY = "standby"  # confined and holding: none of the plugin's code has run
    LOADING = "loading"  # confined, loading the plugin
    SERVING = "serving"  # the Handshake sent: calls are answered
    FAILED = "failed"  # the plugin did not load (the load Error sent)


class _Kind:
    """A kind of message the tables tell apart from others of its type."""

    __slots__ = ("__name__",)

    def __init__(self, name: str) -> None:
        self.__name__ = name

    def __repr__(self) -> str:
        return f"<{self.__name__}>"


#: a Start that asks the worker to confine itself and hold until Resume (a standby)
STANDBY_START: Final = _Kind("Start")
#: an Error that answers the Start (id ``LOAD_CALL_ID``): the plugin did not load
LOAD_ERROR: Final = _Kind("Error")

Kind: TypeAlias = "type[Message] | _Kind"

_H, _W = HostPhase, WorkerPhase

#: what the host may send in each phase, and the phase it then is in. A Shutdown
#: leaves a running worker's phase as it is: a call may race the close, and the
#: Cancel of a call given up may follow it; the worker answers what it can.
HOST_SENDS: Final[dict[HostPhase, dict[Kind, HostPhase]]] = {
    _H.START: {Start: _H.RUNNING, STANDBY_START: _H.STANDBY},
    _H.STANDBY: {Resume: _H.RUNNING, Shutdown: _H.CLOSED},
    _H.RUNNING: {Call: _H.RUNNING, Cancel: _H.RUNNING, Shutdown: _H.RUNNING},
    _H.CLOSED: {},
}

#: what the worker may send in each phase, and the phase it then is in. A reply to a
#: call (a Result, or an Error with the call's id) is not here: it is legal in any
#: phase while its call is in flight, or after the host cancelled it.
WORKER_SENDS: Final[dict[WorkerPhase, dict[Kind, WorkerPhase]]] = {
    _W.IDLE: {},
    _W.CONFINING: {Confined: _W.LOADING, LOAD_ERROR: _W.FAILED, Log: _W.CONFINING},
    _W.CONFINING_STANDBY: {
        Confined: _W.STANDBY,
        LOAD_ERROR: _W.FAILED,
        Log: _W.CONFINING_STANDBY,
    },
    _W.STANDBY: {LOAD_ERROR: _W.FAILED, Log: _W.STANDBY},
    _W.LOADING: {Handshake: _W.SERVING, LOAD_ERROR: _W.FAILED, Log: _W.LOADING},
    _W.SERVING: {Log: _W.SERVING},
    _W.FAILED: {Log: _W.FAILED},
}

#: how the host's messages move the worker's phase: the Start says whether the worker
#: will hold once confined, and Resume ends the hold.
WORKER_MOVED_BY_HOST: Final[dict[Kind, dict[WorkerPhase, WorkerPhase]]] = {
    Start: {_W.IDLE: _W.CONFINING},
    STANDBY_START: {_W.IDLE: _W.CONFINING_STANDBY},
    Resume: {_W.CONFINING_STANDBY: _W.CONFINING, _W.STANDBY: _W.LOADING},
}

_FROM_STANDBY = "a Handshake from a standby worker before Resume"

#: why a worker's message is refused, where "expected ..., got ..." would say less
WORKER_REFUSALS: Final[dict[tuple[WorkerPhase, Kind], str]] = {
    (_W.CONFINING, Handshake): "a Handshake without the Confined that comes before it",
    (_W.CONFINING_STANDBY, Handshake): _FROM_STANDBY,
    (_W.STANDBY, Handshake): _FROM_STANDBY,
    (_W.STANDBY, Confined): "a second Confined",
    (_W.LOADING, Confined): "a second Confined",
    (_W.SERVING, Confined): "a second Confined",
    (_W.SERVING, Handshake): "a second Handshake",
    (_W.FAILED, Confined): "a Confined after the load Error",
    (_W.FAILED, Handshake): "a Handshake after the load Error",
}


class ChannelState:
    """The phases of both sides of one worker's channel, as one end sees them.

    Each end feeds it the messages it sends and those it receives (``process``); a
    message out of order raises LocalProtocolError when this end sent it, and
    RemoteProtocolError when the other did, with ``side`` naming the sender. After
    an error, every later message raises it again.
    """

    __slots__ = (
        "_broken",
        "_cancelled",
        "_hooks",
        "confined",
        "handshake",
        "host",
        "ours",
        "worker",
    )

    def __init__(
        self,
        ours: Side,
        *,
        host: HostPhase = HostPhase.START,
        worker: WorkerPhase = WorkerPhase.IDLE,
    ) -> None:
        #: which end this is
        self.ours: Side = ours
        self.host = host
        self.worker = worker
        #: the worker's report of its sandbox, taken before the plugin's code ran
        self.confined: Confined | None = None
        self.handshake: Handshake | None = None
        #: the hooks the Start offered: each hook's spec, by name
        self._hooks: dict[str, object] = {}
        #: calls this end cancelled (it is the host's): their replies may still come
        self._cancelled: set[int] = set()
        #: the side that broke the protocol, and how
        self._broken: tuple[Side, str] | None = None

    def process(self, sender: Side, msg: Message) -> None:
        """Take ``msg``, sent by ``sender``, into the phases; raise if it is out of order.

        A reply (Result, or an Error with a call's id) comes here only when it answers
        no call in flight (the caller keeps those, and looks each reply up there
        first): it is dropped if its call was cancelled, else refused. The
        Handshake's claims are checked by the end that receives it: the plugin's code
        ran, before it was sent, in the process that sent it."""
        if self._broken is not None:
            self._refuse(*self._broken)
        if sender == HOST:
            self._host_sent(msg)
        else:
            self._worker_sent(msg)

    def _host_sent(self, msg: Message) -> None:
        kind: Kind = STANDBY_START if isinstance(msg, Start) and msg.standby else type(msg)
        allowed = HOST_SENDS[self.host]
        phase = allowed.get(kind)
        if phase is None:
            self._refuse(HOST, _expected(allowed, kind))
        self.host = phase
        moved = WORKER_MOVED_BY_HOST.get(kind)
        if moved is not None:
            self.worker = moved.get(self.worker, self.worker)
        if isinstance(msg, Start):
            self._hooks = msg.hooks
        elif isinstance(msg, Cancel) and self.ours == HOST:
            self._cancelled.add(msg.id)

    def _worker_sent(self, msg: Message) -> None:
        load_error = isinstance(msg, Error) and msg.id == LOAD_CALL_ID
        kind: Kind = LOAD_ERROR if load_error else type(msg)
        allowed = WORKER_SENDS[self.worker]
        phase = allowed.get(kind)
        if phase is None:
            if isinstance(msg, (Result, Error)):
                self._stray_reply(msg.id)
                return
            why = WORKER_REFUSALS.get((self.worker, kind))
            self._refuse(WORKER, why or _expected(allowed, kind))
        if isinstance(msg, Confined):
            self.confined = msg
        elif isinstance(msg, Handshake):
            if self.ours == HOST:
                self._check_claims(msg)
            self.handshake = msg
        self.worker = phase

    def _stray_reply(self, call_id: int) -> None:
        """A reply to no call in flight: dropped if its call was cancelled (the
        reply crossed the Cancel), else refused."""
        if call_id in self._cancelled:
            self._cancelled.discard(call_id)
            return
        self._refuse(WORKER, f"a reply to call id {call_id}, which is not in flight")

    def _check_claims(self, hello: Handshake) -> None:
        """Hold the Handshake to the protocol version, to the Confined (the layers in
        force, the pid and the RSS the memory cap counts from, reported before the
        plugin's code ran) and to the hooks the Start offered (each a hook of the
        host's, taking only arguments it has, each once)."""
        if hello.protocol != PROTOCOL_VERSION:
            self._refuse(
                WORKER,
                f"the Handshake is for protocol version {hello.protocol}; "
                f"the host speaks version {PROTOCOL_VERSION}",
            )
        confined = self.confined
        assert confined is not None  # (the phases see to it)
        if hello.layers != confined.layers:
            changed = sorted(
                k
                for k in {*hello.layers, *confined.layers}
                if hello.layers.get(k) != confined.layers.get(k)
            )
            self._refuse(
                WORKER,
                f"the Handshake's sandbox layers differ from those reported "
                f"before the plugin's code ran: {changed}",
            )
        if hello.pid != confined.pid:
            self._refuse(
                WORKER,
                f"the Handshake names pid {hello.pid}, not the "
                f"{confined.pid} reported before the plugin's code ran",
            )
        if hello.baseline_rss_kb != confined.baseline_rss_kb:
            self._refuse(
                WORKER,
                f"the Handshake's baseline RSS ({hello.baseline_rss_kb} KiB) "
                f"differs from the {confined.baseline_rss_kb} KiB reported "
                f"before the plugin's code ran",
            )
        for hook, accepted in hello.hooks.items():
            spec = self._hooks.get(hook)
            if not isinstance(spec, dict):
                self._refuse(
                    WORKER, f"the Handshake claims hook {hook!r}, which the host did not offer"
                )
            offered = frozenset(spec.get("args", ()))
            if len(set(accepted)) != len(accepted) or not offered.issuperset(accepted):
                self._refuse(
                    WORKER,
                    f"the Handshake claims hook {hook!r} takes {accepted}, "
                    f"not a set of its arguments {sorted(offered)}",
                )

    def _refuse(self, sender: Side, reason: str) -> NoReturn:
        self._broken = (sender, reason)
        error = LocalProtocolError if sender == self.ours else RemoteProtocolError
        raise error(reason, side=sender)


def _expected(allowed: Iterable[Kind], got: Kind) -> str:
    """'expected Resume or Shutdown, got Call': what ``allowed`` lets through instead."""
    names = list(dict.fromkeys(kind.__name__ for kind in allowed))
    if not names:
        return f"expected no message, got {got.__name__}"
    return f"expected {' or '.join(names)}, got {got.__name__}"
