"""bench_instructions: callgrind's output read right, the measured script runs, and its
command line refuses what it cannot measure."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_instructions

# Callgrind's compressed names: an object or function is named once, then by number,
# in ``cob=``/``cfn=`` lines too; the line after ``calls=`` is a call's inclusive cost.
_OUTPUT = """\
version: 1
events: Ir
ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 100
+2 50
cob=(2) /site-packages/_duckdb.so
cfn=(2) duckdb::Execute
calls=1 0
12 7000
ob=(2)
fn=(2)
0 300
-1 20
ob=(1)
fn=(3) PyObject_Malloc
* 5
"""


def test_callgrind_costs_are_summed_by_object_and_function(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text(_OUTPUT, encoding="utf-8")
    by_object, by_function = bench_instructions.parse(out)
    # The 7,000 after ``calls=`` is inclusive and counted where it is spent: not twice.
    assert by_object == {"libpython3.11.so.1.0": 155, "_duckdb.so": 320}
    assert by_function == {
        ("libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"): 150,
        ("_duckdb.so", "duckdb::Execute"): 320,
        ("libpython3.11.so.1.0", "PyObject_Malloc"): 5,
    }


def test_the_measured_script_applies_its_batches(tmp_path: Path) -> None:
    # What runs under valgrind, here without it: both modes finish.
    bench_instructions.child(40, work=False)
    bench_instructions.child(40, work=True)


def test_report_prints_each_tree_and_what_changed(capsys: pytest.CaptureFixture[str]) -> None:
    results: dict[str, bench_instructions.Costs] = {
        "a": ({"libpython": 900, "duckdb": 100}, {("libpython", "eval"): 900}),
        "b": ({"libpython": 800, "duckdb": 100}, {("libpython", "eval"): 800}),
    }
    bench_instructions.report(results, top=5)
    out = capsys.readouterr().out
    assert "total: 1,000, 900" in out
    assert "libpython: 900, 800" in out
    assert "-100 libpython: eval" in out


def test_report_prints_each_trees_costliest_functions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    results: dict[str, bench_instructions.Costs] = {
        "a": (
            {"libc": 600, "duckdb": 400},
            {("libc", "memset"): 500, ("libc", "free"): 100, ("duckdb", "Parse"): 400},
        ),
        "b": ({"libc": 0}, {}),
    }
    bench_instructions.report(results, top=0, functions=2)
    out = capsys.readouterr().out
    assert "costliest functions of a:" in out
    first, second = out.index("500 (50.0 %) libc: memset"), out.index("400 (40.0 %) duckdb: Parse")
    assert first < second
    assert "libc: free" not in out  # the third: beyond ``functions``
    assert "costliest functions of b:" in out  # an empty tree: a heading, no division by 0
    bench_instructions.report(results, top=0)
    assert "costliest" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--functions", "-1"],
        ["--functions", "1001"],
        ["--events", "0"],
        ["--events", "-5"],
        ["--events", "10000001"],
        ["--events", "many"],
        ["--top", "-1"],
        ["--code", "nothing"],
        ["--code", "=."],
        ["--code", "x=/nonexistent/tree"],
    ],
)
def test_command_line_refuses_what_it_cannot_measure(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench_instructions.arguments().parse_args(argv)
    assert exited.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_command_line_takes_checkouts_by_name() -> None:
    root = Path(bench_instructions.__file__).resolve().parents[1]
    parsed = bench_instructions.arguments().parse_args(
        ["--code", f"main={root}", "--events", "100", "--top", "0"]
    )
    assert parsed.code == [("main", root)] and parsed.events == 100 and parsed.top == 0
