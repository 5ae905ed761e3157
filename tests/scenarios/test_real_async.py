"""Real async plugins: hooks that use sniffio, anyio, ``asyncio.timeout``, httpx and the
OpenAI SDK before their first await, sync hooks that run event loops of their own, and
KeyboardInterrupt / SIGINT from a plugin's code.

An async hook runs as an asyncio Task of its worker's loop from its first step, on a
fresh worker and on one resumed from the standby, and whatever the plugin cancels or
times out is its own task; a sync hook runs with no running loop, as in a script; a
KeyboardInterrupt in a hook is the plugin's raise, a SIGINT outside one its crash.
The first tests drive the worker's channel in this process; the rest run real workers
on asyncio and trio hosts, and one host script runs the same plugins as user nobody.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, Sandbox
from plugbox.errors import PluginCrashed, PluginLoadError, PluginRaised
from plugbox.host.supervision import SupervisedPlugin
from plugbox.host.worker_process import WorkerProcess
from plugbox.protocol import WORKER_TO_HOST, Call, FrameDecoder, FrameLimits, Message, Result
from plugbox.protocol import encode as encode_frame
from plugbox.specs import HookSet, HookSpec
from plugbox.worker import loader
from plugbox.worker.sandbox.process import Confinement
from plugbox.worker.serve import WorkerChannel

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
USER_HOST = str(Path(__file__).parents[1] / "scripts" / "real_async_host.py")
HOOKS = HookSet(
    "real-async",
    [
        HookSpec(name="ask", args=("request",), mode="first_result"),
        HookSpec(name="ask_sync", args=("request",), mode="first_result"),
        HookSpec(name="check", args=("request",), mode="first_result"),
    ],
)
FAST = Limits(backoff_initial=0.0)


def plugin(name: str) -> str:
    return str(PLUGINS / f"real_async_{name}.py")


async def ask(host: PluginHost, request: Any, hook: str = "ask") -> Any:
    return (await host.call(hook, request=request)).value


def supervised(host: PluginHost) -> SupervisedPlugin:
    (one,) = host._plugins
    return one


# ------------------------------------------------------------ in this process
class Tasks:
    """A plugin that reports the task its hooks run in."""

    name = "tasks"
    version = "1"

    async def which(self, value: Any) -> Any:
        return id(asyncio.current_task())

    async def waits(self, value: Any) -> Any:
        task = asyncio.current_task()
        await asyncio.sleep(0)
        return id(task) if asyncio.current_task() is task else "moved"

    def runs_a_loop(self, value: Any) -> Any:
        return asyncio.run(asyncio.sleep(0, value))


SERVED = {name: {"args": ["value"], "kind": "either"} for name in ("which", "waits", "runs_a_loop")}


class Replies:
    def __init__(self) -> None:
        self.decoder = FrameDecoder(peer="worker", accept=WORKER_TO_HOST)
        self.got: list[Message] = []

    def write(self, frame: bytes) -> None:
        self.decoder.feed(frame, 0.0)
        while (msg := self.decoder.next_message()) is not None:
            self.got.append(msg)

    def is_closing(self) -> bool:
        return False


def serving(loop: asyncio.AbstractEventLoop) -> tuple[WorkerChannel, Replies]:
    channel = WorkerChannel(
        loader.check(Tasks(), SERVED), {}, Confinement(), FrameLimits(), loop.create_future()
    )
    replies = Replies()
    channel.transport = replies  # type: ignore[assignment]
    return channel, replies


def feed(channel: WorkerChannel, call_id: int, hook: str) -> None:
    frame = encode_frame(Call(id=call_id, hook=hook, args={"value": call_id}), side="host")
    channel.data_received(frame)


def test_a_hook_read_inside_the_serving_task_runs_in_a_task_of_its_own() -> None:
    # a resumed worker reads its first calls inside serve's task: the hook's task is the
    # current one while the hook runs, and serve's task is current again afterwards
    async def main() -> None:
        outer = asyncio.current_task()
        channel, replies = serving(asyncio.get_running_loop())
        feed(channel, 1, "which")
        assert asyncio.current_task() is outer
        (reply,) = replies.got  # answered in its first step, inside data_received
        assert isinstance(reply, Result) and reply.value not in (id(outer), id(None))
        assert channel.tasks == {}

    asyncio.run(main())


@pytest.mark.parametrize(
    "eager",
    [
        True,
        pytest.param(
            False,
            marks=pytest.mark.skipif(
                sys.version_info >= (3, 12), reason="3.12+ starts a task eagerly itself"
            ),
        ),
    ],
)
def test_a_hook_that_waits_goes_on_in_its_own_task_eager_or_not(eager: bool) -> None:
    # before 3.12, without the loop's queue to take its first step from (``ready``
    # None), the task runs it at its turn: the same task throughout, the same answers
    async def main() -> None:
        loop = asyncio.get_running_loop()
        channel, replies = serving(loop)
        if not eager:
            channel.ready = None
        feed(channel, 1, "waits")
        feed(channel, 2, "which")
        assert (len(replies.got) == 1) is eager
        for _ in range(5):
            await asyncio.sleep(0)
        values = {r.id: r.value for r in replies.got if isinstance(r, Result)}
        assert set(values) == {1, 2} and values[1] != "moved" and channel.tasks == {}

    asyncio.run(main())


def test_a_sync_hook_runs_with_no_running_loop_and_the_loop_serves_on() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        channel, replies = serving(loop)
        feed(channel, 1, "runs_a_loop")
        assert asyncio.get_running_loop() is loop
        feed(channel, 2, "which")
        first, second = replies.got
        assert isinstance(first, Result) and first.value == 1  # asyncio.sleep's result
        assert isinstance(second, Result) and first.id == 1 and second.id == 2

    asyncio.run(main())


# ------------------------------------------------------------ real workers
async def test_an_async_hook_can_ask_sniffio_and_call_anyio_before_its_first_await(
    anyio_backend: str,
) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("anyio"))
        got = await ask(host, {"numbers": list(range(1, 11))})
        assert got["library"] == "asyncio" and got["task"].startswith("Task-")
        assert (got["total"], got["parts"], got["clock"], got["cancelled"]) == (55, 2, True, False)
        assert (await ask(host, {"numbers": [7, 8, 9]}))["total"] == 24
        assert host.reports == []


async def test_asyncio_timeout_at_a_hooks_start_times_out_only_its_own_task(
    anyio_backend: str,
) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("timeout"))
        assert await ask(host, {"n": 7}) == {"square": 49}
        assert await ask(host, {"expire": True}) == {"timed_out": True, "task_cancelling": 0}
        # one call waits under its timeout while another's expires beside it
        held: list[Any] = []

        async def hold() -> None:
            held.append(await ask(host, {"hold": True}))

        import anyio

        async with anyio.create_task_group() as group:
            group.start_soon(hold)
            await anyio.wait_all_tasks_blocked()
            assert await ask(host, {"expire": True}) == {"timed_out": True, "task_cancelling": 0}
        assert held == [{"held": "released"}]
        assert [await ask(host, {"n": n}) for n in (2, 3)] == [{"square": 4}, {"square": 9}]
        assert host.reports == []


async def ready_standby(host: PluginHost) -> WorkerProcess:
    """The plugin's standby worker, once it has reported its sandbox."""
    one = supervised(host)
    if one.standby.launching is not None:
        await one.standby.launching.wait()
    spare = one.standby.worker
    assert spare is not None, "no standby worker after a restart"
    assert await spare.wait_confined(), "the standby worker died before it was confined"
    return spare


async def crash(host: PluginHost) -> None:
    with pytest.raises(PluginCrashed) as info:
        await ask(host, "crash")
    assert info.value.report.exit_code == 3


async def test_a_timeout_expiring_on_a_resumed_worker_leaves_the_worker_serving(
    anyio_backend: str,
) -> None:
    # the call that resumes a standby is read inside plugbox's own serving task; the
    # plugin's asyncio.timeout must cancel the hook's task, never that one
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("timeout"), limits=FAST)
        await crash(host)
        assert await ask(host, {"n": 3}) == {"square": 9}  # a fresh worker
        spare = await ready_standby(host)
        await crash(host)
        assert await ask(host, {"expire": True}) == {"timed_out": True, "task_cancelling": 0}
        assert supervised(host).worker is spare, "the restart did not resume the standby"
        squares = [await ask(host, {"n": n}) for n in range(4)]
        assert squares == [{"square": n * n} for n in range(4)]
        assert [(r.cause, r.exit_code) for r in host.reports] == [("crashed", 3)] * 2


class _Numbers(BaseHTTPRequestHandler):
    """GET /sum?a=..&b=.. answers {"sum": a + b, "path": "/sum"} as JSON."""

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: int(values[0]) for key, values in parse_qs(url.query).items()}
        body = json.dumps({"sum": sum(query.values()), "path": url.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def numbers_server() -> Iterator[str]:
    """A loopback HTTP server for the test's duration: its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Numbers)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_httpx_async_client_fetches_from_a_loopback_server(
    anyio_backend: str, numbers_server: str
) -> None:
    # the network is off by default: Sandbox(network=True) lets the plugin connect
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("httpx"), sandbox=Sandbox(network=True))
        request = {"url": f"{numbers_server}/sum", "params": {"a": 2, "b": 40}}
        assert await ask(host, request) == {"status": 200, "body": {"sum": 42, "path": "/sum"}}
        request["params"] = {"a": 5, "b": 6}
        assert (await ask(host, request))["body"]["sum"] == 11
        assert host.reports == []


async def test_openai_async_client_completes_a_chat(anyio_backend: str) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("openai"), config={})
        assert await ask(host, "hello from a plugin") == {
            "reply": "HELLO FROM A PLUGIN",
            "model": "gpt-test",
            "tokens": 8,
        }
        assert (await ask(host, "again"))["reply"] == "AGAIN"
        assert host.reports == []


async def test_a_sync_hook_runs_asyncio_run_and_a_new_loop_and_the_worker_serves_on(
    anyio_backend: str,
) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("loops"))
        for _ in range(2):
            assert await ask(host, [1, 2, 3]) == {
                "squares": [1, 4, 9],
                "fourth_powers": [1, 16, 81],
                "sum": 14,
            }
            assert await ask(host, "x", hook="check") == {"running": True, "echo": "x"}
        assert host.reports == []


@pytest.mark.parametrize("hook", ["ask", "ask_sync"])
async def test_a_keyboard_interrupt_in_a_hook_is_the_plugins_raise(
    anyio_backend: str, hook: str
) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("interrupt"), limits=FAST)
        boot = (await ask(host, "ping", hook))["boot"]
        messages = []
        for how in ("raise", "signal", "thread"):
            with pytest.raises(PluginRaised) as info:
                await ask(host, how, hook)
            report = info.value.report
            assert (report.cause, report.exc_type) == ("raised", "KeyboardInterrupt"), how
            messages.append(report.exc_message)
            # the worker lives on, as after any exception a hook raised
            assert await ask(host, "ping", hook) == {"echo": "ping", "boot": boot}
        where = "an async hook" if hook == "ask" else "a sync hook"
        assert messages == [f"interrupted in {where}", "", ""]
        assert [r.cause for r in host.reports] == ["raised"] * 3


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("interrupt", "KeyboardInterrupt: interrupted while initializing"),
        ("exit", "SystemExit: 5"),
    ],
)
async def test_a_keyboard_interrupt_or_exit_while_loading_is_a_load_error(
    anyio_backend: str, how: str, reason: str
) -> None:
    async with PluginHost(HOOKS) as host:
        with pytest.raises(PluginLoadError) as info:
            await host.add(plugin("interrupt"), config={"initialize": how})
        assert reason in str(info.value)
        assert "plugbox's own code" not in str(info.value)


async def test_a_sigint_outside_a_hook_is_the_plugins_crash(anyio_backend: str) -> None:
    async with PluginHost(HOOKS) as host:
        await host.add(plugin("interrupt"), limits=FAST)
        boot = (await ask(host, "ping"))["boot"]
        # a thread raises SIGINT while the hook waits on the worker's loop
        with pytest.raises(PluginCrashed) as info:
            await ask(host, "wake")
        report = info.value.report
        assert (report.cause, report.detail, report.signal) == (
            "crashed",
            "killed by SIGINT",
            "SIGINT",
        )
        restarted = (await ask(host, "ping"))["boot"]
        assert restarted != boot
        # raised by the loop once the hook has answered
        worker = supervised(host).worker
        assert worker is not None
        assert await ask(host, "after") == {"echo": "after", "boot": restarted}
        cause, detail, _ = await worker.wait_verdict()
        assert (cause, detail) == ("crashed", "killed by SIGINT")
        for _ in range(2):  # the call sent before its end was read may find it dead
            try:
                assert (await ask(host, "ping"))["boot"] not in (boot, restarted)
                break
            except PluginCrashed as exc:
                assert exc.report.detail.endswith("killed by SIGINT")
        else:
            pytest.fail("no worker served after the second SIGINT")
        # the worker that died with no call in flight is reported "between calls"
        assert [r.cause for r in host.reports] == ["crashed"] * len(host.reports)
        assert all(r.detail.endswith("killed by SIGINT") for r in host.reports)
        assert len(host.reports) == 2


# ------------------------------------------------------------ as an ordinary user
def test_an_ordinary_users_host_runs_the_real_async_plugins() -> None:
    done, _, left = run_as_ordinary_user([USER_HOST], prefix="plugbox-test-real-async-")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert left == [], f"the host left files in its TMPDIR: {left}"
    found: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    assert found["uid"] != 0
    for backend in ("asyncio", "trio"):
        got = found[backend]
        assert got["anyio"]["library"] == "asyncio" and got["anyio"]["total"] == 55
        assert got["timeout"] == {"timed_out": True, "task_cancelling": 0}
        assert got["resumed"] == {
            "expire": {"timed_out": True, "task_cancelling": 0},
            "resumed_standby": True,
            "after": [0, 1, 4],
            "reports": [["crashed", 3], ["crashed", 3]],
        }
        assert got["httpx"] == {"status": 200, "body": {"sum": 42, "path": "/sum"}}
        assert got["openai"] == {"reply": "HI THERE", "model": "gpt-test", "tokens": 4}
        assert got["loops"]["sum"] == 14 and got["loops_check"]["running"] is True
        assert got["interrupt"] == {
            "ask": ["raised", "KeyboardInterrupt"],
            "ask_sync": ["raised", "KeyboardInterrupt"],
            "wake": ["crashed", "killed by SIGINT"],
            "served_after": True,
        }
