"""numpy, scipy and pandas plugins at the default limits, and what stops a plugin at its
memory and stack limits.

The libraries' plugins (tests/plugins/real_memory_*.py) are written as their authors
write them, run under the default ``Limits()`` and ``Sandbox()``, and each returns what
it computed, checked here: an inverse times its matrix is the identity, a minimum is
where it is known to be. Memory bombs are stopped and reported as ``memory`` with the
cap and the setting to raise; a stack that runs out is reported as such. The host runs
as root (its workers as nobody) and, in one batch, as an ordinary user.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from ordinary_user import run_as_ordinary_user

from plugbox import Limits, PluginHost, Sandbox, specs
from plugbox.errors import PluginCrashed, PluginFailure, PluginMemoryExceeded
from plugbox.specs import HookSet, HookSpec

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
NUMPY = f"{PLUGINS / 'real_memory_numpy.py'}:NumpyPlugin"
SCIPY = f"{PLUGINS / 'real_memory_scipy.py'}:ScipyPlugin"
PANDAS = f"{PLUGINS / 'real_memory_pandas.py'}:PandasPlugin"
MISBEHAVING = f"{PLUGINS / 'real_memory_misbehaving.py'}:MisbehavingPlugin"
MEMORY_BOMB = str(
    Path(__file__).parents[2] / "plugbox" / "demo" / "plugins" / "misbehaving" / "memory_bomb.py"
)
USER_HOST = str(Path(__file__).parents[1] / "scripts" / "real_memory_host.py")
SPECS = HookSet("real", [HookSpec(name="compute", args=("what", "arg"), mode="first_result")])
#: the thread counts a worker's environment gives its numerical libraries (joblib's)
BLAS_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
#: how far a computed value may be from the exact one
CLOSE = 1e-9
#: what every report of a death at the memory cap says: the cap and the setting
CAP = "memory_mb=256"
SETTING = "raise Limits(memory_mb=...)"


async def compute(ref: str, steps: list[tuple[str, Any]], **add: Any) -> list[Any]:
    """The values ``ref``'s plugin returns for ``steps``, in a host of its own (its
    worker loads the libraries afresh)."""
    async with PluginHost(SPECS) as host:
        await host.add(ref, **add)
        values = [(await host.call("compute", what=w, arg=a)).value for w, a in steps]
        assert host.reports == []
        return values


async def failure(ref: str, what: str, arg: Any, **add: Any) -> PluginFailure:
    """The failure ``ref``'s plugin ends with on ``what``; the next call is answered by a
    fresh worker."""
    async with PluginHost(SPECS) as host:
        await host.add(ref, **add)
        with pytest.raises(PluginFailure) as caught:
            await host.call("compute", what=what, arg=arg)
        return caught.value


# --- the libraries, at the default limits --------------------------------------------------


async def test_numpy_inverts_and_solves_at_the_default_limits() -> None:
    # numpy.linalg.inv of 100x100 died of SIGSEGV under the old 1 MiB stack, and the
    # address-space cap left numpy little room for its OpenBLAS threads
    small, large = await compute(NUMPY, [("inverse", 100), ("inverse", 500)])
    for found, n in ((small, 100), (large, 500)):
        assert found["n"] == n
        assert found["identity_error"] < CLOSE and found["solve_error"] < CLOSE, found


async def test_numpy_holds_three_quarters_of_memory_mb_in_arrays() -> None:
    # what OpenBLAS reserved as numpy loaded (its buffers, written to as it works) is
    # not counted against memory_mb: 192 MB of arrays fit under the default 256 beside
    # LAPACK's own use
    inverse, held = await compute(NUMPY, [("inverse", 500), ("hold", 192)])
    assert inverse["identity_error"] < CLOSE and held == 192.0


async def test_scipy_optimizes_and_solves_sparse_systems_at_the_default_limits() -> None:
    minimum, sparse, dense = await compute(
        SCIPY, [("minimize", [1.3, 0.7, 0.8, 1.9, 1.2]), ("sparse", 2000), ("lapack", 300)]
    )
    assert minimum["success"] and all(abs(x - 1.0) < 1e-4 for x in minimum["x"]), minimum
    assert sparse["residual"] < CLOSE
    # A @ A.T of a tridiagonal matrix is pentadiagonal: 5n - 6 entries; its diagonal is
    # 6² + 1 + 1 inside, 6² + 1 at both ends
    assert sparse["nnz"] == 5 * 2000 - 6
    assert sparse["trace"] == 38 * 2000 - 2
    assert dense["residual"] < CLOSE


async def test_pandas_groups_and_fits_at_the_default_limits() -> None:
    rows = [["a" if i % 3 else "b", float(i)] for i in range(300)]
    groups, fit = await compute(PANDAS, [("groupby", rows), ("fit", 400)])
    b = [float(i) for i in range(0, 300, 3)]
    a = [float(i) for i in range(300) if i % 3]
    assert groups == {
        "a": {"sum": sum(a), "mean": sum(a) / len(a), "n": len(a)},
        "b": {"sum": sum(b), "mean": sum(b) / len(b), "n": len(b)},
    }
    for coefficients in (fit["lstsq"], fit["normal"]):
        assert all(abs(c - e) < 1e-8 for c, e in zip(coefficients, [3.0, -2.0, 5.0], strict=True))


# --- BLAS threads ------------------------------------------------------------------------


async def test_blas_libraries_start_one_thread_by_default() -> None:
    (found,) = await compute(NUMPY, [("threads", None)])
    assert found["env"] == dict.fromkeys(BLAS_THREAD_VARIABLES, "1")
    assert found["threads"] == 1  # OpenBLAS started none of its own


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 CPUs for a second BLAS thread")
async def test_a_thread_count_given_through_the_sandbox_overrides_the_limits() -> None:
    given = Sandbox(env={"OPENBLAS_NUM_THREADS": "2"})
    (found,) = await compute(NUMPY, [("threads", None)], sandbox=given)
    assert found["env"]["OPENBLAS_NUM_THREADS"] == "2" and found["env"]["OMP_NUM_THREADS"] == "1"
    assert found["threads"] == 2  # OpenBLAS's second thread
    (found,) = await compute(NUMPY, [("threads", None)], limits=Limits(blas_threads=2))
    assert found["env"] == dict.fromkeys(BLAS_THREAD_VARIABLES, "2") and found["threads"] == 2
    (found,) = await compute(NUMPY, [("threads", None)], limits=Limits(blas_threads=None))
    assert found["env"] == {}  # unset: the libraries choose (a thread per CPU)


async def test_a_passed_through_variable_overrides_the_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    given = Sandbox(env=("OMP_NUM_THREADS", "PLUGBOX_TEST_UNSET"))
    (found,) = await compute(NUMPY, [("threads", None)], sandbox=given)
    assert found["env"]["OMP_NUM_THREADS"] == "3" and found["env"]["OPENBLAS_NUM_THREADS"] == "1"


def test_sandbox_env_takes_names_or_values() -> None:
    host = {"A": "from the host", "B": "b"}
    assert Sandbox(env=("A", "C")).environment(host) == {"A": "from the host"}
    assert Sandbox(env={"A": "given", "N": "4"}).environment(host) == {"A": "given", "N": "4"}
    assert Sandbox(env={"A": "x"}) == Sandbox(env=("A=x",))
    with pytest.raises(ValueError, match="not a variable's name"):
        Sandbox(env=("=x",))
    assert Limits(blas_threads=None).thread_environment() == {}
    with pytest.raises(ValueError, match="blas_threads"):
        Limits(blas_threads=0)


# --- bombs, at the default limits ---------------------------------------------------------


def assert_at_the_cap(exc: PluginFailure) -> None:
    report = exc.report
    assert isinstance(exc, PluginMemoryExceeded) and report.cause == "memory", report
    assert CAP in report.detail and SETTING in report.detail, report.detail
    assert report.killed


async def test_the_demo_memory_bomb_is_stopped_at_the_cap() -> None:
    async with PluginHost(specs.PIPELINE) as host:  # its hook is process(input_data)
        await host.add(MEMORY_BOMB)
        with pytest.raises(PluginFailure) as caught:
            await host.call("process", input_data=None)
        assert_at_the_cap(caught.value)
        assert caught.value.report.peak_rss_kb > 200 << 10  # it did write up to the cap


@pytest.mark.parametrize(("what", "arg"), [("bytearray", 8), ("growing_list", None)])
async def test_a_bomb_is_stopped_at_the_cap(what: str, arg: Any) -> None:
    exc = await failure(MISBEHAVING, what, arg)
    assert_at_the_cap(exc)
    assert "MemoryError" in exc.report.detail  # raised in the plugin, at the cap
    if what == "bytearray":  # refused at once: nothing of it was ever written
        assert exc.report.peak_rss_kb < 128 << 10


async def test_openblas_out_of_room_is_memory() -> None:
    # private memory reserved but never written (the address-space cap let OpenBLAS
    # take it once), then numpy: OpenBLAS cannot map its buffer and exits 1
    exc = await failure(MISBEHAVING, "reserve_then_numpy", 240)
    report = exc.report
    assert (type(exc), report.cause, report.exit_code) == (PluginMemoryExceeded, "memory", 1)
    assert "OpenBLAS error: Memory allocation" in report.detail, report.detail
    assert CAP in report.detail and SETTING in report.detail, report.detail
    assert "Limits(blas_threads=...)" in report.detail


# --- the stack --------------------------------------------------------------------------


async def test_a_stack_that_runs_out_is_reported_as_such() -> None:
    exc = await failure(MISBEHAVING, "deep_repr", 10**6, limits=Limits(stack_kb=1024))
    assert isinstance(exc, PluginCrashed) and exc.report.signal == "SIGSEGV"
    assert "its stack ran out" in exc.report.detail, exc.report.detail
    assert "Limits(stack_kb=...)" in exc.report.detail and "(1024 KiB)" in exc.report.detail
    # (a SIGSEGV whose handler ran is not called one: tests/scenarios/test_failures.py)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS is threaded on 2 CPUs or more")
async def test_lapack_on_a_small_stack_is_a_stack_that_ran_out() -> None:
    # what the old default did: OpenBLAS's threaded path takes some 4.5 MiB of stack
    small = Limits(stack_kb=1024, blas_threads=2)
    exc = await failure(MISBEHAVING, "linalg", 500, limits=small)
    assert isinstance(exc, PluginCrashed) and "its stack ran out" in exc.report.detail
    (error,) = await compute(MISBEHAVING, [("linalg", 500)], limits=Limits(blas_threads=2))
    assert error < CLOSE  # the default stack runs it


# --- an ordinary user's host ---------------------------------------------------------------


def test_an_ordinary_users_host_runs_the_libraries_and_stops_a_bomb() -> None:
    plan = [
        ["real_memory_numpy.py", "NumpyPlugin", [["inverse", 100], ["inverse", 500]]],
        ["real_memory_scipy.py", "ScipyPlugin", [["minimize", [1.3, 0.7]], ["sparse", 500]]],
        ["real_memory_pandas.py", "PandasPlugin", [["fit", 200]]],
        ["real_memory_misbehaving.py", "MisbehavingPlugin", [["growing_list", None]]],
    ]
    done, _tmp, left = run_as_ordinary_user(
        [USER_HOST, json.dumps(plan)], prefix="plugbox-test-real-memory-"
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-4000:]
    assert left == [], f"the host left files in its TMPDIR: {left}"
    *steps, last = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert last["uid"] != 0
    assert [s["step"] for s in steps] == [
        "inverse",
        "inverse",
        "minimize",
        "sparse",
        "fit",
        "growing_list",
    ], steps
    numpy_small, numpy_large, minimum, sparse, fit, bomb = steps
    for step in (numpy_small, numpy_large):
        assert step["outcome"] == "returned", step
        assert step["value"]["identity_error"] < CLOSE, step
    assert minimum["outcome"] == "returned" and minimum["value"]["success"], minimum
    assert sparse["outcome"] == "returned" and sparse["value"]["residual"] < CLOSE, sparse
    assert fit["outcome"] == "returned", fit
    assert all(abs(c - e) < 1e-8 for c, e in zip(fit["value"]["lstsq"], [3, -2, 5], strict=True))
    assert (bomb["outcome"], bomb["cause"]) == ("failed", "memory"), bomb
    assert CAP in bomb["detail"] and SETTING in bomb["detail"], bomb


# --- how a death is read ---------------------------------------------------------------


def test_a_segfault_is_a_stack_that_ran_out_only_when_its_handler_never_ran() -> None:
    import signal

    from plugbox.host.causes import Death, classify, fault_handled, native_memory_failure

    traceback = [
        "Fatal Python error: Segmentation fault",
        "",
        "Current thread 0x00007f0000000000 (most recent call first):",
        '  File "/plugins/p.py", line 3 in hook',
        "Extension modules: numpy.core._multiarray_umath (total: 1)",
    ]
    assert fault_handled(traceback) and fault_handled(traceback[-1:])
    assert not fault_handled(["a line of the plugin's own", '  File "x.py", line 3, in f'])
    base = {"signal": signal.SIGSEGV, "stack_kb": 8192, "thread_stack_kb": 1024}
    assert classify(Death(**base, fault_handled=True)) == ("crashed", "killed by SIGSEGV")
    assert classify(Death(**base, fault_handled=None)) == ("crashed", "killed by SIGSEGV")
    cause, detail = classify(Death(**base, fault_handled=False))
    assert cause == "crashed" and detail.startswith("killed by SIGSEGV: its stack ran out")
    assert "Limits(stack_kb=...)" in detail and "(8192 KiB)" in detail
    assert "Limits(thread_stack_kb=...)" in detail and "(1024 KiB)" in detail
    line = "OpenBLAS blas_thread_init: pthread_create failed for thread 1 of 2: Resource busy"
    assert native_memory_failure(["ok", line, "then"]) == line
    cause, detail = classify(
        Death(exit_code=1, memory_mb=256, peak_rss_kb=40 << 10, native_memory=line)
    )
    assert cause == "memory" and "start a thread" in detail and SETTING in detail
