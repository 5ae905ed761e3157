"""The run, check, demo and top subcommands (plugbox.cli.run, .demo, .top), called
through their handlers on the ``plugbox`` command's parser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plugbox.cli.codes import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from plugbox.cli.main import build_parser
from plugbox.cli.top import render

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
UPPER = str(ROOT / "plugbox" / "demo" / "plugins" / "upper.py")


def plugbox(*argv: str) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


def test_run_prints_the_outcome_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugbox("run", UPPER, "--hook", "process", "--args", '{"input_data": "hi"}') == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "ok": True,
        "plugin": "upper",
        "version": "1.0.0",
        "hook": "process",
        "value": "HI",
        "args": {"input_data": "HI"},
        "failure": None,
    }


def test_run_a_failing_plugin_exits_1_with_its_report(capsys: pytest.CaptureFixture[str]) -> None:
    code = plugbox(
        "run",
        "plugbox.testing.faults:SleepPlugin",
        "--hook",
        "process",
        "--args",
        '{"input_data": 1}',
        "--timeout",
        "0.3",
        "--memory-mb",
        "64",
        "--cpu-seconds",
        "1",
    )
    assert code == EXIT_FAILED
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["ok"] is False and out["failure"]["cause"] == "timeout"
    assert out["failure"]["signal"] == "SIGKILL"
    assert "timeout: process did not answer within 0.3 s" in captured.err


def test_run_on_the_agent_spec_with_config(capsys: pytest.CaptureFixture[str]) -> None:
    code = plugbox(
        "run",
        "plugbox.plugins.global_instruction",
        "--spec",
        "agent",
        "--config",
        '{"instruction": "Be brief."}',
        "--hook",
        "before_model",
        "--args",
        '{"request": {"messages": []}, "context": {}}',
    )
    assert code == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["args"]["request"]["messages"][0]["content"] == "Be brief."


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--hook", "nope"], "has no hook 'nope'"),
        (["--hook", "process", "--args", "[1]"], "--args must be a JSON object"),
        (["--hook", "process", "--args", "{"], "--args is not valid JSON"),
        (["--hook", "process", "--args", '{"x": 1}'], "x"),
        (["--hook", "process", "--timeout", "-1"], "call_timeout must be a positive number"),
    ],
)
def test_run_usage_errors_exit_2_on_stderr(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert plugbox("run", UPPER, *argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert words in captured.err and captured.out == ""


def test_run_a_plugin_that_cannot_load_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugbox("run", "no/such/plugin.py", "--hook", "process") == EXIT_ERROR
    assert "no such file" in capsys.readouterr().err


def test_check_lists_hooks_and_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugbox("check", UPPER) == EXIT_OK
    out = capsys.readouterr().out
    assert "plugin   upper (version 1.0.0)" in out
    assert "  process(input_data)" in out and "problems  none" in out


def test_check_reports_problems_and_load_errors(capsys: pytest.CaptureFixture[str]) -> None:
    agent_plugin = str(EXAMPLES / "agent" / "plugins" / "block_keyword.py")
    assert plugbox("check", agent_plugin, "--json") == EXIT_FAILED  # AGENT hooks on PIPELINE
    found = json.loads(capsys.readouterr().out)
    assert found["loaded"] and found["hooks"] == {}
    assert any("implements none of the host's hooks" in p for p in found["problems"])
    assert plugbox("check", agent_plugin, "--spec", "agent", "--json") == EXIT_OK
    found = json.loads(capsys.readouterr().out)
    assert set(found["hooks"]) >= {"before_model"} and found["problems"] == []
    assert plugbox("check", "plugbox.nope", "--json") == EXIT_FAILED
    captured = capsys.readouterr()
    assert json.loads(captured.out)["loaded"] is False
    assert "no module named 'plugbox.nope'" in captured.err


def test_demo_runs_a_script_main_and_says_when_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "demo.py"
    script.write_text("async def main():\n    print('demo ran')\n    return 0\n")
    assert plugbox("demo", "--script", str(script)) == EXIT_OK
    assert capsys.readouterr().out == "demo ran\n"
    assert plugbox("demo", "--script", str(tmp_path / "gone.py")) == EXIT_ERROR
    assert "is missing" in capsys.readouterr().err


def test_top_refreshes_a_bounded_number_of_times(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugbox("top", "--iterations", "5", "--interval", "0.05") == EXIT_OK
    out = capsys.readouterr().out
    frames = [f for f in out.split("plugbox top - ") if f]
    assert len(frames) == 5 and "refresh 5/5" in frames[-1]
    last = frames[-1].splitlines()
    assert last[2].split() == [
        "PID",
        "PLUGIN",
        "RSS",
        "MB",
        "CPU",
        "s",
        "CALLS",
        "FAILURES",
        "RESTARTS",
        "STATE",
    ]
    rows = {line.split()[1]: line.split() for line in last[3:] if line.strip()}
    assert set(rows) == {"canary", "busy", "flaky", "crashy"}
    assert rows["canary"][4] == "5" and rows["canary"][5] == "0"
    assert rows["flaky"][5] == "4"  # raises on every call after its first
    assert rows["crashy"][5] == "1" and rows["crashy"][6] == "1"  # exited on call 4
    assert float(rows["canary"][2]) > 16  # it holds 16 MB


def test_render_marks_unknown_figures() -> None:
    row: dict[str, Any] = {
        "pid": None,
        "plugin": "p",
        "rss_mb": None,
        "cpu_s": None,
        "calls": 0,
        "failures": 0,
        "restarts": 0,
        "state": "stopped",
    }
    assert render([row], "t").splitlines()[-1].split() == [
        "-",
        "p",
        "-",
        "-",
        "0",
        "0",
        "0",
        "stopped",
    ]
