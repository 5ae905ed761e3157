"""The baselines plugbox is measured beside: in-process, pluggy, sockets, pools, starts.

Every latency function is ``fn(warmup, n) -> [µs per call]``: it starts what it needs,
times ``n`` single round trips of ``PAYLOAD`` (each one echoed back), and stops
everything it started before it returns. A missing package raises ``Missing``.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import msgpack
from bench_common import (
    ECHO_CHILD,
    HERE,
    PAYLOAD,
    Missing,
    mono_ns,
    now_ns,
    pin_children,
    timed_loop,
)

LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None


# ------------------------------------------------------------------ worker functions
def echo(payload: Any) -> Any:
    """What every pool runs: the payload back."""
    return payload


def pipe_echo_server(conn: Any) -> None:
    """A multiprocessing child: echo over a Pipe until it reads None."""
    while True:
        obj = conn.recv()
        if obj is None:
            conn.close()
            return
        conn.send(obj)


# ------------------------------------------------------------------ in process
def lat_inprocess(warmup: int, n: int) -> list[float]:
    def call() -> Any:
        return echo(PAYLOAD)

    return timed_loop(call, warmup, n)


def lat_pluggy(warmup: int, n: int) -> list[float]:
    try:
        import pluggy
    except ImportError:
        raise Missing("pluggy (pip install pluggy)") from None
    hookspec = pluggy.HookspecMarker("bench")
    hookimpl = pluggy.HookimplMarker("bench")

    class Spec:
        @hookspec(firstresult=True)
        def echo(self, payload: Any) -> Any:
            """The one hook."""

    class Impl:
        @hookimpl
        def echo(self, payload: Any) -> Any:
            return payload

    pm = pluggy.PluginManager("bench")
    pm.add_hookspecs(Spec)
    pm.register(Impl())
    hook = pm.hook.echo

    def call() -> Any:
        return hook(payload=PAYLOAD)

    return timed_loop(call, warmup, n)


# ------------------------------------------------------------------ socket children
@contextmanager
def echo_child(
    mode: str,
    pin: bool = True,
) -> Iterator[tuple[socket.socket, subprocess.Popen[bytes]]]:
    """A fresh ``python -I bench_echo_child.py MODE`` on one end of a socketpair
    (moved to the child CPUs unless ``pin`` is false)."""
    host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", ECHO_CHILD, mode, str(child_end.fileno())],
            pass_fds=(child_end.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    finally:
        child_end.close()
    if pin:
        pin_children()
    try:
        yield host_end, proc
    finally:
        host_end.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _raw_round_trip(sock: socket.socket, unpacker: msgpack.Unpacker) -> Any:
    sock.sendall(msgpack.packb(PAYLOAD, use_bin_type=True))
    while True:
        for obj in unpacker:
            return obj
        data = sock.recv(1 << 16)
        if not data:
            raise EOFError("the echo child closed the socket")
        unpacker.feed(data)


def lat_raw_socketpair(warmup: int, n: int) -> list[float]:
    with echo_child("raw") as (sock, _proc):
        unpacker = msgpack.Unpacker(raw=False)
        return timed_loop(lambda: _raw_round_trip(sock, unpacker), warmup, n)


class EchoClient(asyncio.Protocol):
    """The host side of the asyncio baseline: ``[id, payload]`` out, futures by id."""

    def __init__(self) -> None:
        self.unpacker = msgpack.Unpacker(raw=False)
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.unpacker.feed(data)
        for call_id, payload in self.unpacker:
            fut = self.waiters.pop(call_id, None)
            if fut is not None and not fut.done():
                fut.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(EOFError("the echo child closed the socket"))
        if not self.closed.done():
            self.closed.set_result(None)

    async def call(self, payload: Any) -> Any:
        call_id = self.next_id
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters[call_id] = fut
        assert self.transport is not None
        self.transport.write(msgpack.packb([call_id, payload], use_bin_type=True))
        return await fut


def _run_asyncio(coro_fn: Callable[[], Any], loop_factory: LoopFactory) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coro_fn())


def uvloop_factory() -> LoopFactory:
    try:
        import uvloop
    except ImportError:
        raise Missing("uvloop (pip install uvloop)") from None
    return uvloop.new_event_loop


def lat_asyncio_protocol(warmup: int, n: int, loop_factory: LoopFactory = None) -> list[float]:
    with echo_child("asyncio") as (sock, _proc):

        async def main() -> list[float]:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            transport, client = await loop.create_connection(EchoClient, sock=sock)
            try:
                for _ in range(warmup):
                    await client.call(PAYLOAD)
                out = [0.0] * n
                for i in range(n):
                    t0 = now_ns()
                    await client.call(PAYLOAD)
                    out[i] = (now_ns() - t0) / 1000
                return out
            finally:
                transport.close()
                await client.closed

        return _run_asyncio(main, loop_factory)  # type: ignore[no-any-return]


def tput_asyncio_protocol(total: int, inflight: int, loop_factory: LoopFactory = None) -> float:
    """Calls per second with ``inflight`` tasks each calling in a loop."""
    with echo_child("asyncio") as (sock, _proc):

        async def main() -> float:
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            transport, client = await loop.create_connection(EchoClient, sock=sock)
            per_task = total // inflight

            async def worker(count: int) -> None:
                for _ in range(count):
                    await client.call(PAYLOAD)

            try:
                await asyncio.gather(*(worker(50) for _ in range(inflight)))  # warm-up
                t0 = now_ns()
                await asyncio.gather(*(worker(per_task) for _ in range(inflight)))
                elapsed = (now_ns() - t0) / 1e9
                return per_task * inflight / elapsed
            finally:
                transport.close()
                await client.closed

        return _run_asyncio(main, loop_factory)  # type: ignore[no-any-return]


def fanout_asyncio_protocol(n: int, calls: int, warmup: int = 50) -> dict[str, list[float]]:
    """The floor of a fan-out: one echo to 1 child, then one to each of ``n`` children
    at once (asyncio.gather), as µs samples."""
    with ExitStack() as stack:
        socks = [stack.enter_context(echo_child("asyncio", pin=False))[0] for _ in range(n)]
        pin_children(anywhere=True)  # n children: every CPU, as the scheduler likes

        async def main() -> dict[str, list[float]]:
            loop = asyncio.get_running_loop()
            conns = []
            for sock in socks:
                sock.setblocking(False)
                conns.append(await loop.create_connection(EchoClient, sock=sock))
            clients = [client for _t, client in conns]

            async def one() -> None:
                await clients[0].call(PAYLOAD)

            async def many() -> None:
                await asyncio.gather(*(c.call(PAYLOAD) for c in clients))

            async def measure(fn: Callable[[], Any]) -> list[float]:
                for _ in range(warmup):
                    await fn()
                out = [0.0] * calls
                for i in range(calls):
                    t0 = now_ns()
                    await fn()
                    out[i] = (now_ns() - t0) / 1000
                return out

            try:
                for _ in range(warmup):  # every child answered and settled first
                    await many()
                return {"one": await measure(one), "many": await measure(many)}
            finally:
                for transport, client in conns:
                    transport.close()
                    await client.closed

        return _run_asyncio(main, None)  # type: ignore[no-any-return]


def idle_rss_asyncio_child() -> dict[str, float]:
    """RSS / USS / PSS (MB) of the idle asyncio echo child (a fresh interpreter)."""
    with echo_child("asyncio") as (sock, proc):
        unpacker = msgpack.Unpacker(raw=False)
        sock.sendall(msgpack.packb([0, PAYLOAD], use_bin_type=True))
        while not list(unpacker):
            unpacker.feed(sock.recv(1 << 16))
        return memory_of(proc.pid)


def death_floor(rounds: int) -> list[float]:
    """A plain child (asyncio and msgpack imported) stamps the time and os._exit()s:
    µs from its stamp to EOF on the host's end of its socket, the kernel's floor under
    plugbox's death → report figure."""
    out: list[float] = []
    for _ in range(rounds):
        with echo_child("exit") as (sock, _proc):
            sock.sendall(b"x")
            data = b""
            while chunk := sock.recv(64):
                data += chunk
            eof = mono_ns()
            out.append((eof - int(data)) / 1000)
    return out


def idle_rss_bare_interpreter() -> dict[str, float]:
    """RSS / USS / PSS (MB) of ``python -I -S`` doing nothing: the floor of any worker."""
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", "import os; os.read(0, 1)"], stdin=subprocess.PIPE
    )
    try:
        import psutil

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until it blocks in read()
            if psutil.Process(proc.pid).status() == psutil.STATUS_SLEEPING:
                break
            time.sleep(0.01)
        time.sleep(0.1)
        return memory_of(proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(5)


def memory_of(pid: int) -> dict[str, float]:
    """rss, and uss/pss where readable, in MB."""
    import psutil

    proc = psutil.Process(pid)
    out: dict[str, float] = {"rss": proc.memory_info().rss / 2**20}
    try:
        full = proc.memory_full_info()
        out["uss"] = full.uss / 2**20
        if hasattr(full, "pss"):
            out["pss"] = full.pss / 2**20
    except (psutil.AccessDenied, AttributeError):
        pass
    return out


# ------------------------------------------------------------------ multiprocessing and pools
def lat_mp_pipe(warmup: int, n: int) -> list[float]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=pipe_echo_server, args=(child,), daemon=True)
    proc.start()
    child.close()
    pin_children()
    try:

        def call() -> Any:
            parent.send(PAYLOAD)
            return parent.recv()

        return timed_loop(call, warmup, n)
    finally:
        try:
            parent.send(None)
        except OSError:
            pass
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()


def lat_process_pool(warmup: int, n: int) -> list[float]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        pool.submit(echo, PAYLOAD).result()  # the worker exists from here on
        pin_children()
        return timed_loop(lambda: pool.submit(echo, PAYLOAD).result(), warmup, n)


def lat_loky(warmup: int, n: int) -> list[float]:
    try:
        from loky import get_reusable_executor
    except ImportError:
        raise Missing("loky (pip install loky)") from None
    pool = get_reusable_executor(max_workers=1)
    try:
        pool.submit(echo, PAYLOAD).result()
        pin_children()
        return timed_loop(lambda: pool.submit(echo, PAYLOAD).result(), warmup, n)
    finally:
        pool.shutdown(wait=True, kill_workers=True)


def lat_pebble(warmup: int, n: int) -> list[float]:
    try:
        from pebble import ProcessPool
    except ImportError:
        raise Missing("pebble (pip install pebble)") from None
    pool = ProcessPool(max_workers=1, context=multiprocessing.get_context("spawn"))
    try:
        pool.schedule(echo, args=(PAYLOAD,)).result()
        pin_children()
        return timed_loop(lambda: pool.schedule(echo, args=(PAYLOAD,)).result(), warmup, n)
    finally:
        pool.close()
        pool.join()


# ------------------------------------------------------------------ starts
def start_forkserver(rounds: int, helper: bool = True) -> list[float]:
    """multiprocessing forkserver with the worker preloaded: ask → first echo (µs).

    Measured in a helper ``python -c`` process with PYTHONPATH set, because CPython
    3.11's fork server drops what it is handed to preload the caller's main script
    and import path (it waits for a 'main_path' key ``get_preparation_data`` never
    makes, and ignores ``sys_path``): a preloaded module must be importable from the
    fork server's default path, and every child of a script re-runs that script.
    Under ``-c`` there is no main script and the worker module is preloaded for real:
    forkserver's best case. ``helper=False`` measures from this process instead, what
    a program run as a script gets.
    """
    if not helper:
        return _forkserver_rounds(rounds, stop=False)
    code = (
        "import json, bench_baselines; "
        "print(json.dumps(bench_baselines._forkserver_rounds(int(__import__('sys').argv[1]))))"
    )
    env = dict(os.environ, PYTHONPATH=HERE)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(rounds)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if proc.returncode:
        raise RuntimeError(f"the forkserver helper failed: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _forkserver_rounds(rounds: int, stop: bool = True) -> list[float]:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    out: list[float] = []
    for i in range(rounds + 1):  # round 0 starts the fork server itself: not counted
        t0 = now_ns()
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=pipe_echo_server, args=(child,), daemon=True)
        proc.start()
        parent.send(PAYLOAD)
        parent.recv()
        elapsed = (now_ns() - t0) / 1000
        child.close()
        parent.send(None)
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
        if i:
            out.append(elapsed)
        else:
            pin_children()  # the fork server, started in round 0
    if stop:
        stop_multiprocessing_helpers()
    return out


def start_fresh_interpreter(rounds: int) -> list[float]:
    """``python -I`` importing msgpack, on a socketpair: ask → first echo (µs)."""
    out: list[float] = []
    for i in range(rounds + 1):
        t0 = now_ns()
        with echo_child("raw", pin=False) as (sock, _proc):
            _raw_round_trip(sock, msgpack.Unpacker(raw=False))
            elapsed = (now_ns() - t0) / 1000
        if i:
            out.append(elapsed)
    return out


def stop_multiprocessing_helpers() -> None:
    """Stop the fork server and resource trackers multiprocessing and loky left running."""
    from multiprocessing import forkserver, resource_tracker

    helpers: list[Any] = [forkserver._forkserver, resource_tracker._resource_tracker]
    loky_tracker = sys.modules.get("loky.backend.resource_tracker")
    if loky_tracker is not None:
        helpers.append(getattr(loky_tracker, "_resource_tracker", None))
    for helper in helpers:
        stop = getattr(helper, "_stop", None)
        if stop is not None:
            try:
                stop()
            except Exception:
                pass
