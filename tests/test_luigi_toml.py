"""luigi.toml under LUIGI_CONFIG_PARSER=toml, as Luigi 3.8.1 reads it: the same pipeline run
through Luigi and through batchdeps.luigi with the same luigi.toml makes the same files;
what batchdeps cannot honour in it is an error naming it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PIPELINE = '''
import json
{import_line}

class Source(luigi.Task):
    size = luigi.IntParameter(default=1)
    ratio = luigi.FloatParameter(default=1.0)
    loud = luigi.BoolParameter()
    def output(self):
        return luigi.LocalTarget(f"out/source-{{self.task_id}}.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write(json.dumps([self.size, self.ratio, self.loud]))

class Report(luigi.Task):
    task_namespace = "rep"
    name = luigi.Parameter()
    day = luigi.DateParameter()
    tags = luigi.DictParameter(default={{}})
    def requires(self):
        return Source()
    def output(self):
        return luigi.LocalTarget(f"out/{{self.name}}-{{self.task_id}}.txt")
    def run(self):
        with self.input().open() as src, self.output().open("w") as out:
            out.write(f"{{src.read()}} {{self.day}} {{json.dumps(dict(self.tags))}}")
'''

LUIGI_TOML = '''
[core]
workers = 2

[Source]
size = 4
ratio = 2.5
loud = true

["rep.Report"]
name = "weekly"
day = "2026-11-24"
tags = {role = "web", tier = 2}
'''


def _run(folder: Path, tool: str, *args: str, env: dict[str, str] | None = None,
         module_source: str | None = None) -> subprocess.CompletedProcess[str]:
    import_line = "import luigi" if tool == "luigi" else "import batchdeps.luigi as luigi"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipe.py").write_text(module_source or PIPELINE.format(import_line=import_line))
    command = ["-m", "luigi"] if tool == "luigi" else ["-m", "batchdeps.luigi"]
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("LUIGI_", "BATCHDEPS_CONFIG"))}
    environ.update({"PYTHONPATH": str(folder), **(env or {})})
    return subprocess.run([sys.executable, *command, "--module", "pipe", *args], cwd=folder,
                          env=environ, capture_output=True, text=True, timeout=120)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted((folder / "out").rglob("*")) if p.is_file()}


def test_luigi_toml_gives_the_values_luigi_reads_from_it(tmp_path: Path) -> None:
    """A real run each: Luigi and batchdeps.luigi read the same luigi.toml (typed values,
    an inline table for a DictParameter, a namespaced family's section) and make the same
    files, with the same task ids in their names; a luigi.cfg beside it is not read."""
    made = {}
    for tool in ("luigi", "batchdeps"):
        folder = tmp_path / tool
        folder.mkdir()
        (folder / "luigi.toml").write_text(LUIGI_TOML)
        (folder / "luigi.cfg").write_text("[Source]\nsize = 9\n")  # not the chosen parser
        done = _run(folder, tool, "rep.Report", "--local-scheduler",
                    env={"LUIGI_CONFIG_PARSER": "toml"})
        assert done.returncode == 0, done.stderr
        made[tool] = _files(folder)
    assert made["batchdeps"] == made["luigi"]
    assert len(made["luigi"]) == 2
    report = next(v for k, v in made["luigi"].items() if k.startswith("out/weekly-rep.Report_"))
    assert report == b'[4, 2.5, true] 2026-11-24 {"role": "web", "tier": 2}'


def test_without_the_toml_parser_chosen_luigi_toml_is_not_read(tmp_path: Path) -> None:
    """As in Luigi: luigi.cfg is the default parser, and luigi.toml is then not read."""
    (tmp_path / "luigi.toml").write_text(LUIGI_TOML)
    (tmp_path / "luigi.cfg").write_text("[Source]\nsize = 3\n")
    done = _run(tmp_path, "batchdeps", "rep.Report", "--name", "cfg", "--day", "2026-01-02")
    assert done.returncode == 0, done.stderr
    source = next(v for k, v in _files(tmp_path).items() if k.startswith("out/source-"))
    assert source == b"[3, 1.0, false]"


def test_luigi_toml_core_keys_are_honoured_and_a_path_adds_a_file(tmp_path: Path) -> None:
    """`[scheduler] retry_count` (most runs) from a luigi.toml named by LUIGI_CONFIG_PATH,
    over luigi.toml's own keys: a task failing twice then building needs 3 runs."""
    flaky = textwrap.dedent('''
        import os
        import batchdeps.luigi as luigi

        class Flaky(luigi.Task):
            def output(self):
                return luigi.LocalTarget("out/flaky.txt")
            def run(self):
                runs = int(open("runs").read()) + 1 if os.path.exists("runs") else 1
                open("runs", "w").write(str(runs))
                if runs < 3:
                    raise RuntimeError(f"run {runs} fails")
                with self.output().open("w") as out:
                    out.write("done")
    ''')
    (tmp_path / "luigi.toml").write_text("[scheduler]\nretry_count = 1\nretry_delay = 0\n")
    extra = tmp_path / "conf" / "more.toml"
    extra.parent.mkdir()
    extra.write_text("[scheduler]\nretry_count = 3\n")
    done = _run(tmp_path, "batchdeps", "Flaky", module_source=flaky,
                env={"LUIGI_CONFIG_PARSER": "toml", "LUIGI_CONFIG_PATH": str(extra)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs").read_text() == "3"
    assert (tmp_path / "out" / "flaky.txt").read_text() == "done"


@pytest.mark.parametrize(("toml", "env", "named"), [
    ("[retcode]\ntask_failed = 3\n", {}, "[retcode]"),
    ("[core]\ndefault_scheduler_url = \"http://x:8082\"\n", {}, "default_scheduler_url"),
    ("[core]\nworkers = \"many\"\n", {}, "[core] workers"),
    ("[core]\nworkers = true\n", {}, "[core] workers"),
    ("[NoSuchTask]\nx = 1\n", {}, "[NoSuchTask]"),
    ("[Source]\nsize = \"big\"\n", {}, "'size'"),
    ("[core\nworkers = 2\n", {}, "is not valid TOML"),
    ("workers = 2\n", {}, "outside a section"),
    ("", {"LUIGI_CONFIG_PARSER": "yaml"}, "LUIGI_CONFIG_PARSER"),
    ("", {"LUIGI_CONFIG_PATH": "{folder}/other.cfg"}, "LUIGI_CONFIG_PARSER=cfg"),
])
def test_luigi_toml_that_cannot_be_honoured_is_an_error_naming_it(
        tmp_path: Path, toml: str, env: dict[str, str], named: str) -> None:
    (tmp_path / "luigi.toml").write_text(toml)
    (tmp_path / "other.cfg").write_text("[Source]\nsize = 2\n")
    environ = {"LUIGI_CONFIG_PARSER": "toml",
               **{key: value.format(folder=tmp_path) for key, value in env.items()}}
    done = _run(tmp_path, "batchdeps", "rep.Report", "--name", "x", "--day", "2026-01-02",
                env=environ)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_luigi_toml_arrays_dates_and_unconsumed_keys(tmp_path: Path) -> None:
    """What differs from Luigi on purpose: a TOML array for a ListParameter and a TOML date
    for a DateParameter are taken; a key no parameter takes is warned of."""
    source = textwrap.dedent('''
        import warnings
        import batchdeps.luigi as luigi

        class Listed(luigi.Task):
            items = luigi.ListParameter()
            day = luigi.DateParameter()
            def output(self):
                return luigi.LocalTarget("out/listed.txt")
            def run(self):
                with self.output().open("w") as out:
                    out.write(f"{list(self.items)} {self.day.isoformat()}")
    ''')
    (tmp_path / "luigi.toml").write_text(
        "[Listed]\nitems = [1, \"two\", [3]]\nday = 2026-11-24\ncolour = \"red\"\n")
    done = _run(tmp_path, "batchdeps", "Listed", module_source=source,
                env={"LUIGI_CONFIG_PARSER": "toml", "PYTHONWARNINGS": "always"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "listed.txt").read_text() == "[1, 'two', (3,)] 2026-11-24"
    assert "parameter 'colour' with value 'red' that is not consumed" in done.stderr
