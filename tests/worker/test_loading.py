"""``host.add`` by every kind of reference, every way a plugin fails to load, the
handshake, and ``host.call`` refusing what it cannot send.

Real workers (zygote launcher) on asyncio and trio; the autouse leak check in
conftest.py verifies afterwards that no worker, zygote, zombie or fd was left behind.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
from forking import whoami

from plugbox import Limits, PluginHost, specs
from plugbox.errors import PluginLoadError

pytestmark = pytest.mark.anyio

PLUGINS = Path(__file__).parents[1] / "plugins"
COUNTER = str(PLUGINS / "counter.py")
CHAPTER = str(PLUGINS / "chapter.py")
IMPORTABLE = str(PLUGINS / "importable")


def write(directory: Path, name: str, source: str) -> str:
    path = directory / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def worker_pids(host: PluginHost) -> set[int]:
    """The live processes serving plugins of ``host``: the leaves beneath its zygote
    (a worker in a pid namespace is the zygote's great-grandchild)."""
    zygote = host._launcher.pid  # type: ignore[attr-defined]
    if zygote is None:
        return set()
    return {p.pid for p in psutil.Process(zygote).children(recursive=True) if not p.children()}


async def load_error(ref: str, **kw: Any) -> PluginLoadError:
    """Add ``ref`` expecting PluginLoadError; check nothing is registered or left running."""
    async with PluginHost(specs.PIPELINE) as host:
        with pytest.raises(PluginLoadError) as info:
            await host.add(ref, **kw)
        assert host.plugins == []
        assert worker_pids(host) == set()  # the failed worker is already gone
    return info.value


# ---------------------------------------------------------------- load errors
async def test_a_file_that_does_not_exist(tmp_path: Path) -> None:
    ref = str(tmp_path / "nowhere.py")
    exc = await load_error(ref)
    assert exc.ref == ref
    assert exc.reason == f"no such file: {ref}"
    assert exc.report is None
    assert str(exc) == f"cannot load plugin {ref!r}: no such file: {ref}"


async def test_a_reference_that_is_neither_file_nor_module() -> None:
    exc = await load_error("not a plugin!")
    assert exc.ref == "not a plugin!"
    assert "neither a .py file nor a dotted module name" in exc.reason


async def test_a_file_with_a_syntax_error(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "broken_syntax.py",
        """\
        class BrokenPlugin:
            def process(self, input_data)
                return input_data
        """,
    )
    exc = await load_error(ref)
    assert exc.ref == ref
    assert exc.reason.startswith("SyntaxError: expected ':' (broken_syntax.py, line 2)")
    assert exc.report is None


async def test_a_file_whose_import_fails(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "needs_dep.py",
        """\
        import plugbox_no_such_dependency

        class NeedsDepPlugin:
            pass
        """,
    )
    exc = await load_error(ref)
    assert exc.ref == ref
    assert exc.reason.startswith(
        "ModuleNotFoundError: No module named 'plugbox_no_such_dependency'"
    )
    assert "needs_dep.py" in exc.reason  # the traceback points into the plugin


async def test_a_dotted_module_that_does_not_exist() -> None:
    exc = await load_error("plugbox_no_such_package.plugin")
    assert exc.ref == "plugbox_no_such_package.plugin"
    assert exc.reason == "no module named 'plugbox_no_such_package'"


async def test_a_dotted_module_whose_own_import_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(IMPORTABLE)
    exc = await load_error("plugbox_demo_pkg.broken")
    # the module exists: the error names what it could not import, not the module
    assert exc.reason.startswith(
        "ModuleNotFoundError: No module named 'plugbox_no_such_dependency'"
    )


async def test_a_load_error_is_reported_when_the_host_reads_confined_after_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a loaded machine the host may read a worker's Confined only after the plugin's
    # process has failed to load, exited and been reaped by its init. Its pid can no
    # longer be checked then; that is no breach of the protocol, and the load error
    # that follows is what the host reports (it used to say "crashed: exited with
    # status 0"). The host is made to read Confined that late here.
    import os
    import select

    from plugbox.host import worker_process
    from plugbox.protocol import Confined

    ref = write(
        tmp_path,
        "needs_dep.py",
        """\
        import plugbox_no_such_dependency

        class NeedsDepPlugin:
            pass
        """,
    )
    dispatch = worker_process.WorkerProcess._dispatch
    late: list[int] = []

    def dispatch_late(worker: worker_process.WorkerProcess, msg: Any) -> None:
        if isinstance(msg, Confined) and msg.pid != worker.spawned.pid:
            # the launched process ends after its init, which ends after reaping the
            # plugin's process: once it has ended, the pid Confined names is gone
            launched = worker.spawned.pidfd
            assert launched is not None
            assert select.select([launched], [], [], 30)[0], "the worker did not end"
            assert not os.path.exists(f"/proc/{msg.pid}")
            late.append(msg.pid)
        dispatch(worker, msg)

    monkeypatch.setattr(worker_process.WorkerProcess, "_dispatch", dispatch_late)
    exc = await load_error(ref)
    assert late, "no Confined named a pid of its own (no pid namespace?)"
    assert exc.reason.startswith(
        "ModuleNotFoundError: No module named 'plugbox_no_such_dependency'"
    )


async def test_a_file_with_no_plugin_class(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "helpers.py",
        """\
        class Helper:
            def process(self, input_data):
                return input_data
        """,
    )
    exc = await load_error(ref)
    assert exc.reason == "no class whose name ends with 'Plugin' (name one with ref:ClassName)"


async def test_a_file_with_two_candidate_classes_names_both() -> None:
    exc = await load_error(CHAPTER)
    assert exc.ref == CHAPTER
    assert exc.reason == (
        "several candidate plugin classes (ExclaimPlugin, UppercasePlugin): "
        "name one with ref:ClassName"
    )


async def test_an_imported_plugin_class_is_not_a_candidate(tmp_path: Path) -> None:
    # the module's own class wins over a ...Plugin class it imported (a base, say)
    tmp_path.chmod(0o755)  # the worker (nobody) imports base.py from here
    write(
        tmp_path,
        "base.py",
        """\
        class BasePlugin:
            version = "0.0.1"
        """,
    )
    ref = write(
        tmp_path,
        "derived.py",
        """\
        from base import BasePlugin

        class OwnPlugin(BasePlugin):
            name = "own"

            def process(self, input_data):
                return "own"
        """,
    )
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(ref)
        assert (info.name, info.version) == ("own", "0.0.1")


async def test_a_class_name_that_does_not_exist() -> None:
    exc = await load_error(f"{COUNTER}:Missing")
    assert exc.ref == f"{COUNTER}:Missing"
    assert exc.reason == f"no class 'Missing' in {COUNTER}"


async def test_a_class_whose_constructor_needs_arguments(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "needs_args.py",
        """\
        class NeedsArgsPlugin:
            def __init__(self, endpoint):
                self.endpoint = endpoint
        """,
    )
    exc = await load_error(ref)
    assert exc.reason.startswith("cannot instantiate NeedsArgsPlugin() without arguments")
    assert "'endpoint'" in exc.reason


async def test_a_hook_taking_an_argument_the_spec_lacks(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "extra_arg.py",
        """\
        class ExtraArgPlugin:
            name = "extra-arg"

            def process(self, input_data, context):
                return input_data
        """,
    )
    exc = await load_error(ref)
    assert exc.reason == (
        "plugin 'extra-arg': hook 'process' takes argument 'context', "
        "which the spec does not have (it has: input_data)"
    )


@pytest.mark.parametrize(
    ("signature", "param"), [("self, *args", "args"), ("self, input_data, /", "input_data")]
)
async def test_a_hook_whose_arguments_cannot_be_passed_by_name(
    tmp_path: Path, signature: str, param: str
) -> None:
    ref = write(
        tmp_path,
        "positional.py",
        f"""\
        class PositionalPlugin:
            name = "positional"

            def process({signature}):
                return None
        """,
    )
    exc = await load_error(ref)
    assert exc.reason == (
        f"plugin 'positional': hook 'process' parameter {param!r} must be "
        f"passable by keyword (hook arguments are opt-in by name)"
    )


def _wraps_taking_anything(func: Any) -> Any:
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper


def _with_signature(func: Any) -> Any:
    import inspect

    func.__signature__ = inspect.signature(lambda self, only: None)
    return func


@pytest.mark.parametrize(
    "signature",
    [
        "self",
        "self, a",
        "self, a, b=1",
        "self, a, /, b",
        "self, /, a",
        "self, *args",
        "self, *, a, b=2",
        "self, a, *args, b, **kwargs",
        "self, **kwargs",
        "self, a, **kw",
        "*args",
        "*args, a",
        "self, a, /, b, *c, d, **e",
    ],
)
@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_hooks_parameters_are_read_as_inspect_reads_them(
    signature: str, asynchronous: bool
) -> None:
    # signatures.parameters reads a plain method's code object rather than calling
    # inspect.signature (a quarter of the time, on every load): the same answer
    import inspect

    from plugbox.worker import signatures

    namespace: dict[str, Any] = {}
    exec(f"{'async ' if asynchronous else ''}def hook({signature}):\n    return None\n", namespace)
    cls = type(
        "P",
        (),
        {
            "hook": namespace["hook"],
            "wrapped": _wraps_taking_anything(namespace["hook"]),
            "signed": _with_signature(lambda self, *a: None),
        },
    )
    for method in (cls().hook, cls().wrapped, cls().signed, cls.hook):
        assert signatures.parameters(method) == [
            (p.name, p.kind) for p in inspect.signature(method).parameters.values()
        ]


async def test_initialize_raising(behave: str) -> None:
    exc = await load_error(behave, config={"init": "raise"})
    assert exc.ref == behave
    assert exc.reason.startswith("RuntimeError: initialize refused: bad config")
    assert "behave.py" in exc.reason and "in initialize" in exc.reason  # the traceback
    assert exc.report is None


async def test_a_segfault_while_loading_is_reported(behave: str) -> None:
    exc = await load_error(behave, config={"init": "segfault"})
    assert exc.ref == behave
    assert exc.reason == "crashed: killed by SIGSEGV"
    report = exc.report
    assert report is not None
    assert (report.cause, report.signal, report.exit_code) == ("crashed", "SIGSEGV", None)
    assert report.hook == "(load)" and not report.killed
    assert any("Segmentation fault" in line for line in report.stderr_tail)


async def test_loading_past_the_start_timeout_is_a_timeout(behave: str) -> None:
    exc = await load_error(behave, config={"init": "sleep"}, limits=Limits(start_timeout=0.5))
    assert exc.reason == "timeout: did not finish loading within 0.5 s"
    report = exc.report
    assert report is not None
    assert (report.cause, report.signal, report.hook) == ("timeout", "SIGKILL", "(load)")
    assert report.killed


async def test_two_plugins_with_the_same_name(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        first = await host.add(behave)
        with pytest.raises(PluginLoadError) as info:
            await host.add(behave, config={"unused": True})
        assert info.value.ref == behave
        assert info.value.reason == "a plugin named 'behave' is already added"
        # the second worker is gone; the first is registered alone and still serves
        assert worker_pids(host) == {first.pid}
        assert [p.name for p in host.plugins] == ["behave"]
        out = await host.call("process", input_data={"do": "whoami"})
        assert first.pid is not None
        assert out.value == whoami(first.pid) and out.called == ["behave"]


@pytest.mark.parametrize(
    "config",
    [
        {"tags": {"a", "b"}},
        {"client": object()},
        {"nested": {"deep": [1, 2, b"x", object()]}},
        # both once slipped through: an int beyond 64 bits raised a raw OverflowError, and
        # msgpack packs a tuple key (as an array) that no peer can decode, so a worker
        # started and died decoding Start
        {"big": 2**70},
        {"pairs": {(1, 2): "x"}},
    ],
    ids=["set", "object", "nested-object", "int-too-big", "tuple-key"],
)
async def test_config_that_cannot_be_encoded_fails_before_any_worker(
    behave: str, config: dict[str, Any]
) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    async with PluginHost(specs.PIPELINE) as host:
        with pytest.raises(PluginLoadError) as info:
            await host.add(behave, config=config)
        assert info.value.ref == behave
        assert info.value.reason.startswith("config cannot cross the process boundary")
        assert info.value.report is None
        # nothing was started: not a worker, not even the zygote
        assert {p.pid for p in me.children(recursive=True)} == before
        assert host.plugins == []


# ---------------------------------------------------------------- references that work
async def test_a_file_reference(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave)
        assert (info.name, info.ref) == ("behave", behave)
        out = await host.call("process", input_data={"do": "echo", "x": 1})
        assert out.value == {"do": "echo", "x": 1}


async def test_a_file_reference_naming_one_of_several_classes() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(f"{CHAPTER}:ExclaimPlugin")
        assert info.name == "exclaim" and info.ref == f"{CHAPTER}:ExclaimPlugin"
        assert (await host.call("process", input_data="hi")).value == "hi!"


async def test_a_class_without_the_plugin_suffix_by_name(tmp_path: Path) -> None:
    ref = write(
        tmp_path,
        "doubler.py",
        """\
        class Doubler:
            name = "doubler"

            def process(self, input_data):
                return input_data * 2
        """,
    )
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(f"{ref}:Doubler")
        assert info.name == "doubler"
        assert (await host.call("process", input_data=21)).value == 42


@pytest.mark.parametrize(
    ("ref", "name", "answer"),
    [
        ("plugbox_demo_pkg.greeter", "greeter", "hello, world"),
        ("plugbox_demo_pkg.greeter:GreeterPlugin", "greeter", "hello, world"),
        ("plugbox_demo_pkg.greeter:Shouter", "shouter", "HELLO, WORLD"),
    ],
)
async def test_a_dotted_module_reference(
    monkeypatch: pytest.MonkeyPatch, ref: str, name: str, answer: str
) -> None:
    # the zygote takes the host's sys.path when it starts, i.e. with the first add
    monkeypatch.syspath_prepend(IMPORTABLE)
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(ref)
        assert (info.name, info.ref) == (name, ref)
        assert (await host.call("process", input_data="world")).value == answer


async def test_a_dotted_module_under_a_directory_only_root_can_enter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # tmp_path's parents are 0700 root; the worker runs as nobody
    tmp_path.chmod(0o755)
    package = tmp_path / "plugbox_private_pkg"
    package.mkdir()
    write(package, "__init__.py", "")
    write(package, "helper.py", "SUFFIX = ' (private)'\n")
    write(
        package,
        "plugin.py",
        """\
        from .helper import SUFFIX

        class PrivatePlugin:
            name = "private"

            def process(self, input_data):
                return input_data + SUFFIX
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    async with PluginHost(specs.PIPELINE) as host:
        await host.add("plugbox_private_pkg.plugin")
        assert (await host.call("process", input_data="x")).value == "x (private)"


async def test_a_file_plugin_importing_its_sibling_module() -> None:
    assert "sibling_helper" not in sys.modules  # the host never imports plugin code
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(str(PLUGINS / "sibling_main.py"))
        assert (info.name, info.version) == ("sibling", "3.1.4")
        assert (await host.call("process", input_data="x")).value == "<x>"
    assert "sibling_helper" not in sys.modules


# ---------------------------------------------------------------- the handshake
async def test_plugin_info_after_the_handshake(behave: str) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(behave)
        assert (info.name, info.version, info.ref) == ("behave", "2.1.0", behave)
        assert info.hooks == ("process",)  # not pre_process / post_process
        assert info.state == "running"
        assert (info.restarts, info.calls, info.failures, info.problems) == (0, 0, 0, ())
        # the pid is the worker's: it answers calls, and it is not the host
        assert info.pid is not None and info.pid in worker_pids(host)
        out = await host.call("process", input_data={"do": "whoami"})
        assert out.value == whoami(info.pid)
        assert host.plugins[0].calls == 1

        exclaim = await host.add(f"{CHAPTER}:ExclaimPlugin")
        assert set(exclaim.hooks) == {"process", "post_process"}
        assert exclaim.pid not in (None, info.pid)
        assert [p.name for p in host.plugins] == ["behave", "exclaim"]


async def test_a_method_named_like_a_hook_the_spec_lacks_is_a_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = write(
        tmp_path,
        "lookalike.py",
        """\
        class LookalikePlugin:
            name = "lookalike"

            def process(self, input_data):
                return input_data

            def before_everything(self, input_data):
                return "never called"

            def helper(self):
                return "not hook-like"

            def _on_private(self):
                return "private"
        """,
    )
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(ref)
        assert info.hooks == ("process",)
        assert info.problems == (
            "plugin 'lookalike': method 'before_everything' looks like a hook but the host "
            "declares no hook of that name",
        )
        assert host.plugins[0].problems == info.problems
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.name == "plugbox.host" and r.levelno == logging.WARNING
    ]
    assert info.problems[0] in warned  # the host says so when the plugin is added


# ---------------------------------------------------------------- bad calls
async def test_an_unknown_hook_is_a_type_error() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(COUNTER)
        with pytest.raises(TypeError, match=r"unknown hook 'before_everything'"):
            await host.call("before_everything", input_data=1)
        assert (await host.call("process", input_data=1)).value == 1  # not called before


async def test_an_unknown_or_missing_argument_is_a_type_error() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        await host.add(COUNTER)
        with pytest.raises(TypeError) as info:
            await host.call("process", input_data=1, context={})
        assert str(info.value) == "hook 'process' has no argument 'context' (it has: input_data)"
        with pytest.raises(TypeError) as info:
            await host.call("post_process", input_data=1)
        assert str(info.value) == "hook 'post_process' needs argument 'output'"
        with pytest.raises(TypeError, match="hook 'process' needs argument 'input_data'"):
            await host.call("process")
        assert (await host.call("process", input_data=1)).value == 1  # the first call
        assert host.plugins[0].calls == 1


@pytest.mark.parametrize(
    "value",
    [
        object(),
        {1, 2},
        {"fine": [1, 2, {"not": object()}]},
        2**64,
        # msgpack packs a tuple key (as an array) that the worker cannot decode: it used to
        # pass this check, and the worker died of the Call (exit status 2)
        {(1, 2): "pair"},
    ],
    ids=["object", "set", "nested-object", "int-too-big", "tuple-key"],
)
async def test_a_value_that_cannot_cross_is_refused_before_sending(value: Any) -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(COUNTER)
        with pytest.raises(TypeError) as exc:
            await host.call("process", input_data=value)
        message = str(exc.value)
        assert message.startswith("hook 'process' argument 'input_data': a ")
        assert "cannot cross the process boundary" in message
        # the plugin was never called: this is its first call, on the same worker
        assert (await host.call("process", input_data="ok")).value == 1
        assert host.plugins[0].pid == info.pid and host.plugins[0].calls == 1
        assert host.reports == []


# ---------------------------------------------------------------- the seed chapter
async def test_the_chapter_plugin_runs_unchanged() -> None:
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(f"{CHAPTER}:UppercasePlugin", config={"suffix": "?"})
        assert (info.name, info.version, info.hooks) == ("uppercase", "1.0.0", ("process",))
        out = await host.call("process", input_data="is it loud")
        assert out.value == "IS IT LOUD?" and out.called == ["uppercase"]
        assert out.args == {"input_data": "IS IT LOUD?"}


async def test_a_protocol_class_named_like_a_plugin_is_not_a_candidate(tmp_path: Path) -> None:
    # the seed chapter defines `class AgentPlugin(Protocol)` beside its plugins
    source = tmp_path / "with_protocol.py"
    source.write_text(
        "from typing import Protocol\n\n"
        "class AgentPlugin(Protocol):\n"
        "    def process(self, input_data): ...\n\n"
        "class ShoutPlugin:\n"
        "    def process(self, input_data):\n"
        "        return input_data.upper()\n"
    )
    async with PluginHost(specs.PIPELINE) as host:
        info = await host.add(str(source))
        assert info.name == "ShoutPlugin"
        assert (await host.call("process", input_data="hi")).value == "HI"
