"""bench/run.py writes its table into docs/benchmarks.md without losing the write-ups under
it: only the "Latest figures" section is its own."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

BENCH_RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"
INFO = {"machine": "a test machine", "python": "3", "batchdeps": "0", "luigi": "-",
        "date": "today"}


def _bench_run() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_under_test", BENCH_RUN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _bench(run: types.ModuleType) -> types.SimpleNamespace:
    row = run.Row("help", "`--help`", run.Series(), None, None, goal="", met=None, note="")
    return types.SimpleNamespace(rows=[row], args=types.SimpleNamespace(quick=True))


def test_the_table_is_replaced_and_every_other_section_kept(tmp_path: Path) -> None:
    run = _bench_run()
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nold head\n\n## Latest figures\n\nold table\n\n"
                   "## A write-up\n\nmeasured by hand\n\n### Its part\n\nmore\n")
    run.write_doc(_bench(run), doc, INFO)
    text = doc.read_text()
    assert "old table" not in text and "a test machine" in text and "`--help`" in text
    assert text.endswith("\n## A write-up\n\nmeasured by hand\n\n### Its part\n\nmore\n")
    assert text.count("## Latest figures") == 1


def test_a_new_file_gets_the_head_and_the_table(tmp_path: Path) -> None:
    run = _bench_run()
    doc = tmp_path / "benchmarks.md"
    run.write_doc(_bench(run), doc, INFO)
    text = doc.read_text()
    assert text.startswith(run.DOC_HEAD) and "## Latest figures" in text
    assert "`--help`" in text
