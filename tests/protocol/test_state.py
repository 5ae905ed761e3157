"""The message order (``plugbox.protocol._state``), with messages and bytes alone.

Each rule is shown from both ends where both apply: a message out of order raises
LocalProtocolError at the end that sent it and RemoteProtocolError at the end that
received it, ``side`` naming the sender either way, with the same text.
"""

from __future__ import annotations

from typing import Any

import pytest

from plugbox.protocol import (
    HOST_SENDS,
    HOST_TO_WORKER,
    LOAD_CALL_ID,
    PROTOCOL_VERSION,
    WORKER_SENDS,
    WORKER_TO_HOST,
    Call,
    Cancel,
    ChannelState,
    Confined,
    Error,
    FrameDecoder,
    Handshake,
    HostPhase,
    LocalProtocolError,
    Log,
    Message,
    ProtocolError,
    RemoteProtocolError,
    Result,
    Resume,
    Shutdown,
    Start,
    WorkerPhase,
    encode,
)
from plugbox.protocol._state import Side

HOOKS = {
    "process": {"args": ["input_data"], "mutable": ["input_data"]},
    "post_process": {"args": ["input_data", "output"]},
    "not_a_spec": ["x"],
}
LAYERS = {"seccomp": True, "landlock_filesystem": False}
CONFINED = Confined(layers=LAYERS, pid=42, baseline_rss_kb=1000)
LOG = Log(level=20, logger="plugin", message="hello")
CALL = Call(id=1, hook="process", args={"input_data": 1})
BOTH_ENDS: list[Side] = ["host", "worker"]


def start(*, standby: bool = False) -> Start:
    return Start(ref="plugin.py", hooks=HOOKS, standby=standby)


def hello(**changes: Any) -> Handshake:
    fields: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "plugin": "plugin",
        "version": "1.0",
        "hooks": {"process": ["input_data"]},
        "pid": 42,
        "baseline_rss_kb": 1000,
        "layers": dict(LAYERS),
    }
    return Handshake(**{**fields, **changes})


def load_error() -> Error:
    return Error(id=LOAD_CALL_ID, exc_type="PluginLoadError", message="no such file")


def fed(ours: Side, *messages: tuple[Side, Message]) -> ChannelState:
    """A state at the ``ours`` end that has taken ``messages`` (sender, message)."""
    state = ChannelState(ours)
    for sender, msg in messages:
        state.process(sender, msg)
    return state


def loading(ours: Side) -> ChannelState:
    return fed(ours, ("host", start()), ("worker", CONFINED))


def serving(ours: Side) -> ChannelState:
    return fed(ours, ("host", start()), ("worker", CONFINED), ("worker", hello()))


def standby(ours: Side) -> ChannelState:
    return fed(ours, ("host", start(standby=True)), ("worker", CONFINED))


def refusal(state: ChannelState, sender: Side, msg: Message) -> str:
    """The reason ``state`` refuses ``msg`` from ``sender``, checking the error's class
    and side."""
    with pytest.raises(ProtocolError) as info:
        state.process(sender, msg)
    error = info.value
    assert error.side == sender
    assert type(error) is (LocalProtocolError if sender == state.ours else RemoteProtocolError)
    assert str(error) == f"{sender} broke the protocol: {error.reason}"
    return error.reason


# ------------------------------------------------------------------ the tables
def test_every_phase_has_its_row_and_every_row_leads_to_a_phase() -> None:
    assert set(HOST_SENDS) == set(HostPhase)
    assert set(WORKER_SENDS) == set(WorkerPhase)
    for row in HOST_SENDS.values():
        assert all(isinstance(phase, HostPhase) for phase in row.values())
    for worker_row in WORKER_SENDS.values():
        assert all(isinstance(phase, WorkerPhase) for phase in worker_row.values())


def test_the_tables_name_only_messages_of_their_direction() -> None:
    host_kinds = {getattr(kind, "__name__", "") for row in HOST_SENDS.values() for kind in row}
    worker_kinds = {getattr(kind, "__name__", "") for row in WORKER_SENDS.values() for kind in row}
    assert host_kinds == {cls.__name__ for cls in HOST_TO_WORKER}
    assert worker_kinds <= {cls.__name__ for cls in WORKER_TO_HOST}


# ------------------------------------------------------------------ the host's messages
@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize("first", [CALL, Resume(), Shutdown(), Cancel(id=1)], ids=type)
def test_start_comes_first(ours: Side, first: Message) -> None:
    state = ChannelState(ours)
    assert refusal(state, "host", first) == f"expected Start, got {type(first).__name__}"


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_a_start_leads_to_calls_and_a_standby_start_to_resume(ours: Side) -> None:
    state = fed(ours, ("host", start()))
    assert (state.host, state.worker) == (HostPhase.RUNNING, WorkerPhase.CONFINING)
    state = fed(ours, ("host", start(standby=True)))
    assert (state.host, state.worker) == (HostPhase.STANDBY, WorkerPhase.CONFINING_STANDBY)


@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize("msg", [CALL, Cancel(id=1), start()], ids=type)
def test_a_standby_takes_only_resume_or_shutdown(ours: Side, msg: Message) -> None:
    expected = f"expected Resume or Shutdown, got {type(msg).__name__}"
    assert refusal(standby(ours), "host", msg) == expected


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_resume_sets_a_standby_loading(ours: Side) -> None:
    state = standby(ours)
    assert state.worker is WorkerPhase.STANDBY
    state.process("host", Resume())
    assert (state.host, state.worker) == (HostPhase.RUNNING, WorkerPhase.LOADING)
    state.process("host", CALL)  # right behind Resume, before the Handshake
    state.process("worker", hello())
    assert state.worker is WorkerPhase.SERVING


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_a_standby_resumed_before_its_confined_is_read_loads_after_it(ours: Side) -> None:
    state = fed(ours, ("host", start(standby=True)), ("host", Resume()))
    assert state.worker is WorkerPhase.CONFINING
    state.process("worker", CONFINED)
    assert state.worker is WorkerPhase.LOADING


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_a_standby_told_to_shut_down_takes_nothing_more(ours: Side) -> None:
    state = standby(ours)
    state.process("host", Shutdown())
    assert state.host is HostPhase.CLOSED
    assert refusal(state, "host", Resume()) == "expected no message, got Resume"


@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize("msg", [Resume(), start(), start(standby=True)], ids=repr)
def test_resume_and_start_are_refused_once_running(ours: Side, msg: Message) -> None:
    expected = f"expected Call or Cancel or Shutdown, got {type(msg).__name__}"
    assert refusal(serving(ours), "host", msg) == expected


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_calls_and_cancels_may_follow_a_shutdown(ours: Side) -> None:
    # a call may race the close, and the Cancel of one given up may follow it
    state = serving(ours)
    for msg in (CALL, Shutdown(), Call(id=2, hook="process", args={}), Cancel(id=2), Shutdown()):
        state.process("host", msg)
    assert state.host is HostPhase.RUNNING


# ------------------------------------------------------------------ the worker's messages
@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_nothing_comes_from_a_worker_before_its_start(ours: Side) -> None:
    assert refusal(ChannelState(ours), "worker", LOG) == "expected no message, got Log"


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_confined_then_handshake(ours: Side) -> None:
    state = fed(ours, ("host", start()))
    state.process("worker", CONFINED)
    assert state.worker is WorkerPhase.LOADING and state.confined is CONFINED
    handshake = hello()
    state.process("worker", handshake)
    assert state.worker is WorkerPhase.SERVING and state.handshake is handshake


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_a_handshake_without_the_confined_is_refused(ours: Side) -> None:
    state = fed(ours, ("host", start()))
    expected = "a Handshake without the Confined that comes before it"
    assert refusal(state, "worker", hello()) == expected


@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize("confined", [False, True])
def test_a_handshake_from_a_standby_before_resume_is_refused(ours: Side, confined: bool) -> None:
    state = standby(ours) if confined else fed(ours, ("host", start(standby=True)))
    expected = "a Handshake from a standby worker before Resume"
    assert refusal(state, "worker", hello()) == expected


@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize("make", [loading, standby, serving])
def test_a_second_confined_is_refused(ours: Side, make: Any) -> None:
    assert refusal(make(ours), "worker", CONFINED) == "a second Confined"


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_a_second_handshake_is_refused(ours: Side) -> None:
    assert refusal(serving(ours), "worker", hello()) == "a second Handshake"


@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize(
    "before",
    [
        [("host", start())],
        [("host", start(standby=True))],
        [("host", start(standby=True)), ("worker", CONFINED)],
        [("host", start()), ("worker", CONFINED)],
    ],
    ids=["confining", "confining-to-hold", "standby", "loading"],
)
def test_the_load_error_may_come_at_any_point_before_the_handshake(
    ours: Side, before: list[tuple[Side, Message]]
) -> None:
    state = fed(ours, *before)
    state.process("worker", load_error())
    assert state.worker is WorkerPhase.FAILED
    state.process("worker", LOG)  # what it logged on the way out
    assert refusal(state, "worker", hello()) == "a Handshake after the load Error"
    state = fed(ours, *before)
    state.process("worker", load_error())
    assert refusal(state, "worker", CONFINED) == "a Confined after the load Error"


@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_a_load_error_after_the_handshake_answers_no_call(ours: Side) -> None:
    expected = f"a reply to call id {LOAD_CALL_ID}, which is not in flight"
    assert refusal(serving(ours), "worker", load_error()) == expected


@pytest.mark.parametrize("ours", BOTH_ENDS)
@pytest.mark.parametrize("make", [loading, standby, serving])
def test_logs_come_in_any_phase_after_the_start(ours: Side, make: Any) -> None:
    state = make(ours)
    phase = state.worker
    state.process("worker", LOG)
    assert state.worker is phase


# ------------------------------------------------------------------ replies
@pytest.mark.parametrize("reply", [Result(id=7, value=None), Error(id=7, exc_type="E", message="")])
def test_a_reply_to_no_call_in_flight_is_refused(reply: Message) -> None:
    expected = "a reply to call id 7, which is not in flight"
    assert refusal(serving("host"), "worker", reply) == expected


def test_a_reply_to_a_call_the_host_cancelled_is_dropped_once() -> None:
    state = serving("host")
    state.process("host", Cancel(id=7))
    state.process("worker", Result(id=7, value=None))  # it crossed the Cancel
    expected = "a reply to call id 7, which is not in flight"
    assert refusal(state, "worker", Result(id=7, value=None)) == expected


def test_a_cancel_the_worker_receives_is_not_kept() -> None:
    # only the end that sent a Cancel looks for the reply it may still get
    state = serving("worker")
    state.process("host", Cancel(id=7))
    assert refusal(state, "worker", Result(id=7, value=None)).startswith("a reply to call id 7")


# ------------------------------------------------------------------ the Handshake's claims
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"protocol": PROTOCOL_VERSION + 1},
            f"the Handshake is for protocol version {PROTOCOL_VERSION + 1}; "
            f"the host speaks version {PROTOCOL_VERSION}",
        ),
        (
            {"layers": {**LAYERS, "landlock_filesystem": True, "made_up": True}},
            "the Handshake's sandbox layers differ from those reported before the "
            "plugin's code ran: ['landlock_filesystem', 'made_up']",
        ),
        ({"pid": 1}, "the Handshake names pid 1, not the 42 reported before the plugin's code ran"),
        (
            {"baseline_rss_kb": 4 << 20},
            "the Handshake's baseline RSS (4194304 KiB) differs from the 1000 KiB "
            "reported before the plugin's code ran",
        ),
        (
            {"hooks": {"no_such_hook": []}},
            "the Handshake claims hook 'no_such_hook', which the host did not offer",
        ),
        (
            {"hooks": {"not_a_spec": ["x"]}},
            "the Handshake claims hook 'not_a_spec', which the host did not offer",
        ),
        (
            {"hooks": {"process": ["input_data", "bogus"]}},
            "the Handshake claims hook 'process' takes ['input_data', 'bogus'], "
            "not a set of its arguments ['input_data']",
        ),
        (
            {"hooks": {"post_process": ["output", "output"]}},
            "the Handshake claims hook 'post_process' takes ['output', 'output'], "
            "not a set of its arguments ['input_data', 'output']",
        ),
    ],
    ids=["protocol", "layers", "pid", "baseline", "hook", "hook-spec", "argument", "twice"],
)
def test_the_host_holds_the_handshake_to_what_it_knows(
    changes: dict[str, Any], expected: str
) -> None:
    state = loading("host")
    assert refusal(state, "worker", hello(**changes)) == expected
    assert state.handshake is None


def test_a_handshake_claiming_fewer_hooks_and_arguments_is_in_order() -> None:
    state = loading("host")
    state.process("worker", hello(hooks={"post_process": ["output"], "process": []}))
    assert state.worker is WorkerPhase.SERVING


def test_the_worker_does_not_check_its_own_handshake() -> None:
    # the plugin's code ran in the worker before the Handshake was sent: the checks
    # are the receiving end's, where the plugin cannot reach them
    state = loading("worker")
    state.process("worker", hello(pid=1, protocol=PROTOCOL_VERSION + 1))
    assert state.worker is WorkerPhase.SERVING


# ------------------------------------------------------------------ after an error
@pytest.mark.parametrize("ours", BOTH_ENDS)
def test_after_an_error_every_message_is_refused_alike(ours: Side) -> None:
    state = serving(ours)
    reason = refusal(state, "worker", hello())
    first = RemoteProtocolError if ours == "host" else LocalProtocolError
    later: list[tuple[Side, Message]] = [("worker", LOG), ("host", CALL), ("host", Shutdown())]
    for sender, msg in later:
        with pytest.raises(first) as info:
            state.process(sender, msg)
        assert (info.value.side, info.value.reason) == ("worker", reason)


# ------------------------------------------------------------------ from bytes
def test_both_ends_agree_on_a_standby_workers_life_read_from_bytes() -> None:
    # each end sees the two directions interleaved its own way: the host sends Resume
    # and a call before the Handshake comes; the worker reads them only after its
    # Confined, and the call only after its Handshake
    to_worker = FrameDecoder(peer="host", accept=HOST_TO_WORKER)
    to_host = FrameDecoder(peer="worker", accept=WORKER_TO_HOST)
    host = ChannelState("host")
    as_host_sees: list[tuple[Side, Message]] = [
        ("host", start(standby=True)),
        ("worker", CONFINED),
        ("host", Resume()),
        ("host", CALL),
        ("worker", hello()),
        ("host", Cancel(id=1)),
        ("worker", Result(id=1, value=1)),  # it crossed the Cancel
        ("host", Shutdown()),
        ("worker", LOG),
    ]
    for sender, msg in as_host_sees:
        if sender == "host":
            host.process("host", msg)
            to_worker.feed(encode(msg, side="host"), 0.0)
        else:
            to_host.feed(encode(msg, side="worker"), 0.0)
            host.process("worker", _next(to_host))
    worker = ChannelState("worker")
    worker.process("host", _next(to_worker))  # Start
    worker.process("worker", CONFINED)
    worker.process("host", _next(to_worker))  # Resume
    worker.process("worker", hello())
    while (msg := to_worker.next_message()) is not None:
        worker.process("host", msg)
    assert (host.host, host.worker) == (worker.host, worker.worker)
    assert (host.host, host.worker) == (HostPhase.RUNNING, WorkerPhase.SERVING)


def test_a_worker_reading_a_second_start_from_bytes_names_the_host() -> None:
    worker = ChannelState("worker")
    decoder = FrameDecoder(peer="host", accept=HOST_TO_WORKER)
    decoder.feed(encode(start(), side="host") + encode(start(), side="host"), 0.0)
    worker.process("host", _next(decoder))
    worker.process("worker", CONFINED)
    reason = refusal(worker, "host", _next(decoder))
    assert reason == "expected Call or Cancel or Shutdown, got Start"


def _next(decoder: FrameDecoder) -> Message:
    msg = decoder.next_message()
    assert msg is not None
    return msg
