"""``plugbox bench``: runs the suite of the source checkout (or ``--suite``) and passes
its exit status on; without a suite it says where to get one and exits 3. The wheel
install's side of it is in test_wheel.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugbox.cli.bench import checkout_suite
from plugbox.cli.codes import EXIT_ERROR
from plugbox.cli.main import main

ROOT = Path(__file__).parents[2]


def test_bench_runs_the_suite_and_passes_its_exit_status(tmp_path: Path) -> None:
    suite = tmp_path / "run.py"
    suite.write_text("import sys\nprint('ran', sys.argv[1:])\nsys.exit(7)\n")
    assert main(["bench", "--suite", str(suite), "--quick"]) == 7
    assert main(["bench", "--suite", str(tmp_path / "missing.py")]) == 3


def test_bench_finds_the_suite_of_the_checkout_it_runs_from() -> None:
    assert checkout_suite() == ROOT / "benchmarks" / "run.py"


def test_bench_without_a_suite_exits_3_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--suite", str(tmp_path / "missing.py")]) == EXIT_ERROR
    assert f"plugbox bench: no benchmark suite at {tmp_path / 'missing.py'}" in (
        capsys.readouterr().err
    )
