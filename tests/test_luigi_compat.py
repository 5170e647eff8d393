"""batchdeps.luigi against Luigi 3.8.1 itself: the same class source gives the same task
ids, families, reprs and string parameters; and what the module refuses, by name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.s3util import boto_client, bucket, moto_endpoint, moto_server, s3_env  # noqa: F401

#: One module's source, imported once as Luigi's and once as batchdeps.luigi's.
TASKS = '''
import datetime, enum, json
{import_line}
from {prefix}luigi import date_interval

class Color(enum.Enum):
    red = 1
    blue = 2

class Plain(luigi.Task):
    pass

class Many(luigi.Task):
    a = luigi.IntParameter(default="3")
    b = luigi.BoolParameter()
    c = luigi.DateParameter(default=datetime.date(2026, 11, 24))
    d = luigi.Parameter(default="a value longer than sixteen characters, with / and spaces")
    e = luigi.ListParameter(default=[1, [2, 3], "x"])
    f = luigi.DateIntervalParameter(default=date_interval.Month(2026, 2))
    g = luigi.FloatParameter(default=1)
    h = luigi.DictParameter(default={{"x": 1, "y": [1, 2]}})
    i = luigi.Parameter(significant=False, default="left out")
    j = luigi.TupleParameter(default=((1, 2), (3, 4)))
    k = luigi.EnumParameter(enum=Color, default=Color.blue)
    l = luigi.EnumListParameter(enum=Color, default=[Color.red, Color.blue])
    m = luigi.ChoiceParameter(choices=["x", "y"], default="y")
    n = luigi.MonthParameter(default=datetime.date(2026, 3, 1))
    o = luigi.YearParameter(default=datetime.date(2026, 1, 1))
    p = luigi.DateHourParameter(default=datetime.datetime(2026, 11, 24, 13))
    q = luigi.DateMinuteParameter(default=datetime.datetime(2026, 11, 24, 13, 45))
    r = luigi.DateSecondParameter(default=datetime.datetime(2026, 11, 24, 13, 45, 7))
    s = luigi.TimeDeltaParameter(default=datetime.timedelta(days=8, hours=3, seconds=5))
    t = luigi.OptionalParameter(default=None)
    u = luigi.OptionalIntParameter(default=None)
    v = luigi.NumericalParameter(var_type=int, min_value=0, max_value=10, default=4)
    w = luigi.Parameter(default="private", visibility=luigi.parameter.ParameterVisibility.PRIVATE)
    x = luigi.ChoiceListParameter(choices=["a", "b", "c"], default=["c", "a"])

class Spaced(luigi.Task):
    task_namespace = "reports.daily"
    day = luigi.DateParameter()
    shard = luigi.IntParameter(default=0)

luigi.namespace("scoped", scope=__name__)

class InScope(luigi.Task):
    when = luigi.DateIntervalParameter()

luigi.namespace(scope=__name__)

class Positional(luigi.Task):
    first = luigi.Parameter()
    second = luigi.IntParameter(positional=False, default=2)
    third = luigi.IntParameter(default=3)

made = [
    Plain(), Many(), Many(a=7, b=True, d="short", g=2.5, t="set", u=5),
    Spaced(day=datetime.date(2026, 11, 24)),
    Spaced(datetime.date(2026, 11, 25), 3),
    InScope(when=date_interval.Week(2026, 48)),
    InScope(when=date_interval.Custom.parse("2026-11-01-2026-11-08")),
    InScope(when=date_interval.Date(2026, 11, 24)),
    InScope(when=date_interval.Year(2026)),
    Positional("one", 9),
    Many.from_str_params(Many(b=True, e=[5], g=1.5).to_str_params()),
    Many(a=4).clone(Spaced, day=datetime.date(2026, 1, 2)),
]
print(json.dumps([{{"id": t.task_id, "family": t.task_family, "repr": repr(t),
                   "str_params": t.to_str_params(),
                   "significant": t.to_str_params(only_significant=True),
                   "params": [name for name, _ in type(t).get_params()]}}
                  for t in made]))
'''


def _describe(tmp_path: Path, tool: str) -> list[dict[str, object]]:
    if tool == "luigi":
        source = TASKS.format(import_line="import luigi", prefix="")
    else:
        source = TASKS.format(import_line="import batchdeps.luigi as luigi",
                              prefix="batchdeps.")
    folder = tmp_path / tool
    folder.mkdir()
    (folder / "tasks.py").write_text(source)
    done = subprocess.run([sys.executable, "-W", "ignore", "tasks.py"], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_task_ids_families_and_reprs_are_luigis(tmp_path: Path) -> None:
    luigi = _describe(tmp_path, "luigi")
    ours = _describe(tmp_path, "batchdeps")
    assert len(luigi) == len(ours) == 12
    for theirs, mine in zip(luigi, ours):
        assert mine == theirs
    assert luigi[3]["id"].startswith("reports.daily.Spaced_2026_11_24_0_")
    assert luigi[5]["family"] == "scoped.InScope"


def run_module(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pipe.py").write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "batchdeps.luigi", "--module", "pipe", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})


CHAIN = '''
    import abc
    import batchdeps.luigi as luigi

    class Source(luigi.Task):
        size = luigi.IntParameter(default=1)
        def output(self):
            return luigi.LocalTarget(f"out/source-{self.size}.txt")
        def run(self):
            with self.output().open("w") as out:
                out.write("x" * self.size)

    class Report(luigi.Task):
        task_namespace = "rep"
        name = luigi.Parameter()
        def requires(self):
            return Source()
        def output(self):
            return luigi.LocalTarget(f"out/{self.name}-{self.task_id}.txt")
        def run(self):
            with self.input().open() as src, self.output().open("w") as out:
                out.write(src.read().upper())

    class Partial(luigi.Task):
        @abc.abstractmethod
        def source(self):
            ...
'''


def test_the_luigi_command_line_takes_family_flags(tmp_path: Path) -> None:
    """`--Source-size 3` sets the parameter of a task other than the one named."""
    done = run_module(tmp_path, CHAIN, "rep.Report", "--name", "weekly", "--Source-size",
                      "3", "--local-scheduler", "--workers", "2")
    assert done.returncode == 0, done.stderr
    made = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert made[0] == "source-3.txt"
    assert made[1].startswith("weekly-rep.Report_weekly_")
    assert (tmp_path / "out" / made[1]).read_text() == "XXX"


def test_luigi_cfg_gives_defaults_with_dashed_keys(tmp_path: Path) -> None:
    (tmp_path / "luigi.cfg").write_text("[Source]\nsize = 4\n[rep.Report]\nname = cfg\n"
                                        "[core]\nworkers = 2\n")
    done = run_module(tmp_path, CHAIN, "rep.Report")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "source-4.txt").read_text() == "xxxx"


#: Adds conf/extra.cfg from code (unless told not to), then prints what a run would use.
_ADDED = """
import sys
import batchdeps.luigi as luigi
from batchdeps.luigi.configuration import add_config_path, get_config
from batchdeps.luigi.interface import load_run_config

class Source(luigi.Task):
    size = luigi.IntParameter(default=1)

if sys.argv[1] == "add":
    assert add_config_path("conf/extra.cfg")
config = load_run_config()
print(config.workers, config.resources, config.batchdeps.get("timeout"), Source().size,
      get_config().get("core", "workers", None))
"""


def test_a_file_added_from_code_gives_the_runs_settings_as_well_as_parameter_values(
        tmp_path: Path) -> None:
    """`add_config_path()` from code: its `[core]`, `[worker]` and `[resources]` are the
    run's, as in Luigi, not only its `[Family]` values; a section it cannot honour is an
    error naming it, as in luigi.cfg."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "extra.cfg").write_text(
        "[core]\nworkers = 3\n[worker]\ntimeout = 7\n[resources]\ndb = 2\n[Source]\nsize = 5\n")

    def added(how: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _ADDED, how], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)

    done = added("add")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "{'db':", "2}", "7.0", "5", "3"]
    done = added("not")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "{}", "None", "1", "None"]
    (tmp_path / "conf" / "extra.cfg").write_text("[email]\nreceiver = a@b\n")
    done = added("add")
    assert done.returncode == 1 and "[email]" in done.stderr and "conf/extra.cfg" in done.stderr


@pytest.mark.parametrize(("cfg", "named"), [
    ("[retcode]\ntask_failed = 3\n", "[retcode]"),
    ("[hdfs]\nclient = hadoopcli\n", "[hdfs]"),
    ("[core]\ndefault-scheduler-url = http://x:8082\n", "default_scheduler_url"),
    ("[NoSuchTask]\nx = 1\n", "[NoSuchTask]"),
])
def test_luigi_cfg_that_cannot_be_honoured_is_an_error_naming_it(
        tmp_path: Path, cfg: str, named: str) -> None:
    (tmp_path / "luigi.cfg").write_text(cfg)
    done = run_module(tmp_path, CHAIN, "rep.Report", "--name", "x")
    assert done.returncode == 2
    assert named in done.stderr and "docs/from-luigi.md" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "named"), [
    (["rep.Report", "--name", "x", "--scheduler-host", "h"], "--scheduler-host"),
    (["rep.Report", "--name", "x", "--Nope-size", "3"], "--Nope-size"),
    (["rep.Report", "--name", "x", "--Source-colour", "3"], "colour"),
    (["rep.Report"], "'name'"),
    (["NoTask"], "NoTask"),
    (["rep.Report", "--name", "x", "--Source-size", "many"], "many"),
    (["Partial"], "Partial is abstract: it leaves source undefined"),
])
def test_bad_luigi_command_lines_exit_2_naming_the_problem(
        tmp_path: Path, args: list[str], named: str) -> None:
    done = run_module(tmp_path, CHAIN, *args)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr


def test_contrib_modules_without_a_stand_in_are_refused_by_name(tmp_path: Path) -> None:
    done = run_module(tmp_path, "from batchdeps.luigi.contrib.bigquery import BigQueryTarget\n",
                      "X")
    assert done.returncode == 2
    assert "luigi.contrib.bigquery" in done.stderr and "docs/from-luigi.md" in done.stderr


def test_hdfs_target_is_refused_when_made(tmp_path: Path) -> None:
    source = CHAIN + '''
    import batchdeps.luigi.contrib.hdfs
    class OnHdfs(luigi.Task):
        def output(self):
            return luigi.contrib.hdfs.HdfsTarget("data/x")
    '''
    done = run_module(tmp_path, source, "OnHdfs")
    assert done.returncode == 2, done.stderr
    assert "luigi.contrib.hdfs.HdfsTarget" in done.stderr
    assert "docs/from-luigi.md" in done.stderr and "Traceback" not in done.stderr


NATIVE = '''
import batchdeps as bd

class Source(bd.Task):
    size = bd.IntParameter(default=1)
    def output(self):
        return bd.FileTarget(f"out/source-{self.size}.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write("x" * self.size)

class Report(bd.Task):
    name = bd.Parameter()
    def requires(self):
        return Source()
    def output(self):
        return bd.FileTarget(f"out/{self.name}.txt")
    def run(self):
        with self.input().open() as src, self.output().open("w") as out:
            out.write(src.read().upper())
'''


def _native_project(tmp_path: Path, size_in_config: int | None = None) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "__init__.py").write_text(NATIVE)
    config = '[batchdeps]\nmodules = ["pipelines"]\n'
    if size_in_config is not None:
        config += f"[tasks.Source]\nsize = {size_in_config}\n"
    (tmp_path / "config.toml").write_text(config)


def _batchdeps(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    from support.project import BATCHDEPS

    return subprocess.run([BATCHDEPS, *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


def test_batchdeps_run_takes_family_flags_over_the_config(tmp_path: Path) -> None:
    """`batchdeps run Report --name w --Source-size 3`: Luigi's flag for a parameter of
    another task family, over its `[tasks.Source]` default."""
    _native_project(tmp_path, size_in_config=2)
    done = _batchdeps(tmp_path, "run", "Report", "--name", "w", "--Source-size", "3")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "source-3.txt").read_text() == "xxx"
    assert (tmp_path / "out" / "w.txt").read_text() == "XXX"
    assert not (tmp_path / "out" / "source-2.txt").exists()


@pytest.mark.parametrize(("args", "named"), [
    (["--Source-colour", "3"], "no parameter 'colour'"),
    (["--Source-size", "many"], "'many' is not a valid int"),
    (["--Source-size"], "--Source-size needs a value"),
])
def test_bad_family_flags_exit_2_naming_them(tmp_path: Path, args: list[str],
                                             named: str) -> None:
    _native_project(tmp_path)
    done = _batchdeps(tmp_path, "run", "Report", "--name", "w", *args)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


FORMATS = '''
import gzip, sys
{import_line}
from {prefix}luigi import format

class Write(luigi.Task):
    def output(self):
        return {{"text": luigi.LocalTarget("out/text.txt"),
                "utf8": luigi.LocalTarget(path="out/utf8.txt", format=format.UTF8),
                "nop": luigi.LocalTarget("out/nop.bin", format=format.Nop),
                "gzip": luigi.LocalTarget("out/data.gz", format=format.Gzip),
                "gzip_text": luigi.LocalTarget("out/text.gz", format=format.UTF8 >> format.Gzip)}}
    def run(self):
        out = self.output()
        with out["text"].open("w") as f:
            f.write("plain\\r\\nlines\\n")
        with out["utf8"].open("w") as f:
            f.write("h\\u00e9llo \\u2603\\n")
        with out["nop"].open("w") as f:
            f.write(bytes(range(256)))
        with out["gzip"].open("w") as f:
            f.write(b"compressed bytes\\n" * 50)
        with out["gzip_text"].open("w") as f:
            f.write("compressed text \\u00e9\\n")

class Read(luigi.Task):
    def requires(self):
        return Write()
    def output(self):
        return luigi.LocalTarget("out/read.txt")
    def run(self):
        got = self.input()
        with got["gzip"].open("r") as f:
            data = f.read()
        with got["gzip_text"].open("r") as f:
            text = f.read()
        with got["nop"].open("r") as f:
            raw = f.read()
        with self.output().open("w") as out:
            out.write(repr((data[:17], text, raw[:4], len(raw))))

assert luigi.build([Read()], local_scheduler=True, log_level="WARNING")
'''


def _formats(tmp_path: Path, tool: str) -> dict[str, bytes]:
    folder = tmp_path / tool
    folder.mkdir()
    if tool == "luigi":
        source = FORMATS.format(import_line="import luigi", prefix="")
    else:
        source = FORMATS.format(import_line="import batchdeps.luigi as luigi",
                                prefix="batchdeps.")
    (folder / "formats.py").write_text(source)
    done = subprocess.run([sys.executable, "formats.py"], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {p.name: p.read_bytes() for p in (folder / "out").iterdir() if p.is_file()}


def test_formats_write_and_read_the_bytes_luigi_does(tmp_path: Path) -> None:
    """Text, UTF8, Nop byte for byte; Gzip (whose header holds a time) once unpacked."""
    import gzip

    theirs = _formats(tmp_path, "luigi")
    ours = _formats(tmp_path, "batchdeps")
    assert sorted(ours) == sorted(theirs) == ["data.gz", "nop.bin", "read.txt", "text.gz",
                                              "text.txt", "utf8.txt"]
    for name in ("text.txt", "utf8.txt", "nop.bin", "read.txt"):
        assert ours[name] == theirs[name], name
    for name in ("data.gz", "text.gz"):
        assert gzip.decompress(ours[name]) == gzip.decompress(theirs[name]), name
    assert theirs["utf8.txt"] == "h\u00e9llo \u2603\n".encode()


def test_a_failed_write_through_a_format_leaves_nothing(tmp_path: Path) -> None:
    import batchdeps.luigi as luigi

    target = luigi.LocalTarget(str(tmp_path / "x.gz"), format=luigi.format.Gzip)
    with pytest.raises(RuntimeError), target.open("w") as out:
        out.write(b"half")
        raise RuntimeError("boom")
    assert not target.exists()
    with target.open("w") as out:
        out.write(b"whole")
    with target.open("r") as back:
        assert back.read() == b"whole"


S3_PIPE = r'''
import batchdeps.luigi as luigi
import batchdeps.luigi.contrib.s3
from batchdeps.luigi import format

class Upload(luigi.Task):
    bucket = luigi.Parameter()
    def output(self):
        return luigi.contrib.s3.S3Target(f"s3://{self.bucket}/up/{self.task_id}.gz",
                                         format=format.UTF8 >> format.Gzip)
    def run(self):
        with self.output().open("w") as out:
            out.write("d\u00e9j\u00e0 vu\n")

class Check(luigi.Task):
    bucket = luigi.Parameter()
    def requires(self):
        return Upload(self.bucket)
    def output(self):
        return luigi.LocalTarget("check.txt")
    def run(self):
        with self.input().open("r") as got, self.output().open("w") as out:
            out.write(got.read())
'''


def test_s3_target_writes_through_batchdeps_s3_with_a_format(
        tmp_path: Path, bucket: str, moto_endpoint: str) -> None:
    """luigi.contrib.s3.S3Target on moto's S3 server, its options from [storage.s3]."""
    import gzip

    (tmp_path / "pipe.py").write_text(S3_PIPE)
    (tmp_path / "config.toml").write_text(
        '[storage.s3]\nendpoint_url = "${S3_ENDPOINT}"\n')
    done = subprocess.run(
        [sys.executable, "-m", "batchdeps.luigi", "--module", "pipe", "Check",
         "--bucket", bucket], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "check.txt").read_text() == "d\u00e9j\u00e0 vu\n"
    keys = [o["Key"] for o in boto_client(moto_endpoint).list_objects_v2(
        Bucket=bucket).get("Contents", [])]
    assert len(keys) == 1 and keys[0].startswith("up/Upload_") and keys[0].endswith(".gz")
    body = boto_client(moto_endpoint).get_object(Bucket=bucket, Key=keys[0])["Body"].read()
    assert gzip.decompress(body) == "d\u00e9j\u00e0 vu\n".encode()


ENDED_SCOPE = '''
{import_line}
luigi.namespace("all")
luigi.namespace("pipe", scope=__name__)
class Inside(luigi.Task):
    pass
luigi.namespace(None, scope=__name__)
class After(luigi.Task):
    pass
luigi.namespace()
class Last(luigi.Task):
    pass
print(Inside.get_task_family(), After.get_task_family(), Last.get_task_family())
'''


def test_an_ended_namespace_scope_falls_back_as_in_luigi(tmp_path: Path) -> None:
    """`namespace(None, scope=m)` ends that scope: the wider namespace applies again."""
    seen = []
    for tool, line in (("luigi", "import luigi"), ("batchdeps", "import batchdeps.luigi as luigi")):
        (tmp_path / f"{tool}_ns.py").write_text(ENDED_SCOPE.format(import_line=line))
        done = subprocess.run([sys.executable, f"{tool}_ns.py"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        seen.append(done.stdout.split())
    assert seen[0] == seen[1] == ["pipe.Inside", "all.After", "Last"]


def test_flatten_output_lists_a_shared_requirement_once_and_clone_takes_plain_attributes(
        tmp_path: Path) -> None:
    """Luigi's flatten_output walks a diamond of wrappers breadth first and names each task
    with outputs once; clone() fills a parameter of the new class from a plain attribute
    of the same name. The same script through Luigi and through batchdeps.luigi."""
    script = tmp_path / "check.py"
    script.write_text(
        "import sys\n"
        "if sys.argv[1] == 'luigi':\n    import luigi\nelse:\n    import batchdeps.luigi as luigi\n"
        "flatten_output = luigi.task.flatten_output  # not `from luigi.task`: Luigi's own\n"
        "class A(luigi.Task):\n    n = luigi.IntParameter()\n"
        "    def output(self): return luigi.LocalTarget(f'file{self.n}.txt')\n"
        "class B(luigi.WrapperTask):\n    def requires(self): return [A(n=1), A(n=2)]\n"
        "class C(luigi.WrapperTask):\n    def requires(self): return A(n=1)\n"
        "class D(luigi.WrapperTask):\n    def requires(self): return [B(), C(), A(n=3)]\n"
        "class P(luigi.Task):\n    x = luigi.Parameter()\n"
        "class Q(luigi.Task):\n    x = 'from attribute'\n"
        "print([t.path for t in flatten_output(D())], Q().clone(P).x)\n")
    answers = [subprocess.run([sys.executable, str(script), tool], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout
               for tool in ("luigi", "batchdeps")]
    assert answers[0] == answers[1]
    assert answers[1].split("]")[0].count("file1.txt") == 1 and "from attribute" in answers[1]


def through_both(tmp_path: Path, script: str, *args: str,
                 timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
    """`script` run once with Luigi and once with batchdeps.luigi (its first argument says
    which), each in a folder of its own; both must exit 0."""
    path = tmp_path / "check.py"
    path.write_text(script)
    done = []
    for tool in ("luigi", "batchdeps"):
        folder = tmp_path / f"run-{tool}"  # not a folder named as a package
        folder.mkdir()
        ran = subprocess.run([sys.executable, str(path), tool, *args], cwd=folder,
                             capture_output=True, text=True, timeout=timeout)
        assert ran.returncode == 0, ran.stderr
        done.append(ran)
    return done


TARGET_API = r'''
import abc, os, re, sys
if sys.argv[1] == "luigi":
    import luigi
    import luigi.format
    import luigi.target
    from luigi.local_target import LocalFileSystem
else:
    import batchdeps.luigi as luigi
    import batchdeps.luigi.format
    import batchdeps.luigi.target
    from batchdeps.luigi.local_target import LocalFileSystem
seen = []
for make in (lambda: luigi.target.Target(),
             lambda: type("NoExists", (luigi.target.Target,), {})(),
             lambda: type("NoFs", (luigi.target.FileSystemTarget,), {"open": None})("x")):
    try:
        make()
        seen.append("made")
    except TypeError:
        seen.append("TypeError")

class Folder(luigi.target.FileSystem):
    """A file system of one's own, on a real folder, that logs what it is asked."""
    calls = []
    def exists(self, path):
        return os.path.exists(path)
    def remove(self, path, recursive=True, skip_trash=True):
        os.remove(path)
    def mkdir(self, path, parents=True, raise_if_exists=False):
        self.calls.append(("mkdir", path, parents, raise_if_exists))
        os.makedirs(path, exist_ok=True)
    def move(self, path, dest):
        self.calls.append(("move", re.sub(r"\d{10}", "N", path), dest))
        os.rename(path, dest)

class Mine(luigi.target.FileSystemTarget):
    fs = Folder()
    def open(self, mode="r"):
        return open(self.path, mode)

mine = Mine("deep/down/file.txt")
seen.append(mine.exists())
with mine.temporary_path() as tmp:
    with open(tmp, "w") as out:
        out.write("made")
seen += [mine.exists(), open("deep/down/file.txt").read(), Folder.calls]
try:
    with Mine("deep/down/other.txt").temporary_path() as tmp:
        open(tmp, "w").close()
        raise KeyError("stop")
except KeyError:
    seen.append(sorted(re.sub(r"\d{10}", "N", n) for n in os.listdir("deep/down")))
mine.remove()
seen.append(mine.exists())

local = luigi.LocalTarget("modes/out.bin", format=luigi.format.Nop)
with local.open("bw") as out:
    out.write(b"bytes")
with local.open("br") as back:
    seen.append(back.read())
seen.append(isinstance(local, luigi.target.FileSystemTarget))
lines = luigi.LocalTarget("lines.txt", luigi.format.SysNewLine)
with lines.open("w") as out:
    out.write(b"a\rb\nc\r\nd")
with lines.open("r") as back:
    seen.append(back.read())
seen.append(open("lines.txt", "rb").read())
try:
    LocalFileSystem().mkdir("no/such/parent", parents=False)
except luigi.target.MissingParentDirectory:
    seen.append("MissingParentDirectory")
print(seen)
'''


def test_target_api_of_ones_own_goes_through_its_file_system_as_in_luigi(
        tmp_path: Path) -> None:
    """Luigi's abstract Target and FileSystemTarget cannot be made; a FileSystemTarget on a
    FileSystem of one's own gets exists(), remove() and temporary_path() through that file
    system (its folder made, then rename_dont_move, nothing when the block raises); the
    'bw' and 'br' modes, SysNewLine and LocalFileSystem.mkdir(parents=False). One script
    through Luigi and through batchdeps.luigi, each in a folder of its own."""
    answers = [done.stdout for done in through_both(tmp_path, TARGET_API, timeout=60)]
    assert answers[0] == answers[1]
    assert answers[1].startswith("['TypeError', 'TypeError', 'TypeError', False, True, 'made'")
    assert "('move', 'deep/down/file.txt-luigi-tmp-N', 'deep/down/file.txt')" in answers[1]
    assert "b'a\\nb\\nc\\nd'" in answers[1] and "MissingParentDirectory" in answers[1]
    assert "b'bytes'" in answers[1]


WORKER_API = r'''
import sys
if sys.argv[1] == "luigi":
    import luigi
    import luigi.worker
else:
    import batchdeps.luigi as luigi
    import batchdeps.luigi.worker

class Broke(Exception):
    pass

class Part(luigi.Task):
    n = luigi.IntParameter()
    def output(self):
        return luigi.LocalTarget(f"out/part-{self.n}.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write(f"{self.n}\n")

class Fails(luigi.Task):
    def output(self):
        return luigi.LocalTarget("out/fails.txt")
    def run(self):
        raise Broke("on purpose")

class NoInit(luigi.Task):
    def __init__(self):
        pass

seen = []
@Fails.event_handler(luigi.Event.FAILURE)
def failed(task, exception):
    seen.append(("FAILURE", type(exception).__name__, str(exception)))

with luigi.worker.Worker(worker_processes=2, keep_alive=False, wait_interval=0.1) as w:
    seen.append(w.add(Part(n=1)))
    seen.append(w.add(Part(n=2)))
    seen.append(w.run())
seen.append(sorted(open(f"out/part-{n}.txt").read() for n in (1, 2)))
with luigi.worker.Worker() as w:
    w.add(Fails())
    seen.append(w.run())
for bad in (None, NoInit()):
    try:
        luigi.worker.Worker().add(bad)
        seen.append("added")
    except luigi.worker.TaskException:
        seen.append("TaskException")
answer = luigi.build([Part(n=3)], local_scheduler=True, detailed_summary=True)
seen.append(isinstance(answer.worker, luigi.worker.Worker))
print(seen)
'''


def test_a_worker_adds_tasks_then_runs_them_as_luigis(tmp_path: Path) -> None:
    """Luigi's `luigi.worker.Worker` as a context manager: add() answers True, run() builds
    what was added (True, or False when a task failed), [worker] keys that tune a keep-alive
    worker are taken, what is not a made task is a TaskException, build() answers with its
    worker; FAILURE handlers get what run() raised. One script, Luigi and batchdeps.luigi."""
    answers = [done.stdout for done in through_both(tmp_path, WORKER_API)]
    assert answers[0] == answers[1]
    assert answers[1].strip() == ("[True, True, True, ['1\\n', '2\\n'], ('FAILURE', 'Broke', "
                                  "'on purpose'), False, 'TaskException', 'TaskException', "
                                  "True]")


def test_a_worker_refuses_what_it_cannot_honour_by_name() -> None:
    from batchdeps.errors import UsageError
    from batchdeps.luigi.worker import Worker

    for kwargs, needle in (({"scheduler": object()}, "no scheduler"),
                           ({"assistant": True}, "assist"),
                           ({"task_limit": 3}, "task_limit=...): batchdeps cannot honour"),
                           ({"worker_processes": 0}, "worker_processes=0"),
                           ({"timeout": "soon"}, "timeout='soon'")):
        with pytest.raises(UsageError, match=re.escape(needle)):
            Worker(**kwargs)
    assert Worker(timeout=5).options == {"timeout": 5.0}
    assert Worker(timeout=0, count_uniques=True).options == {}


REPORTING_TASK = r'''
import pickle, sys
if sys.argv[1] == "luigi":
    import luigi
else:
    import batchdeps.luigi as luigi

class Reports(luigi.Task):
    def output(self):
        return luigi.LocalTarget("out/reports.txt")
    def run(self):
        self.set_status_message("halfway")
        self.set_progress_percentage(50)
        self.set_tracking_url("http://jobs.example/1")
        with self.output().open("w") as out:
            out.write("done\n")

print(luigi.build([Reports()], local_scheduler=True, workers=int(sys.argv[2])))
task = luigi.Task()
task.set_status_message = lambda message: message
with task.no_unpicklable_properties():
    pickle.dumps(task)
print(task.set_status_message("kept"), open("out/reports.txt").read().strip())
'''


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_running_task_may_report_its_status_progress_and_url(tmp_path: Path,
                                                                workers: str) -> None:
    """Luigi lends a running task set_status_message(), set_progress_percentage() and
    set_tracking_url(); here they write a line to the task's output (its log), so a
    pipeline calling them builds as in Luigi; no_unpicklable_properties() as Luigi's."""
    luigi, ours = through_both(tmp_path, REPORTING_TASK, workers)
    for line in ("status: halfway", "progress: 50%", "tracking url: http://jobs"):
        assert line in ours.stderr
    answers = [luigi.stdout, ours.stdout]
    assert answers[0] == answers[1] == "True\nkept done\n"


RENAMED_CLASS = r'''
import sys
if sys.argv[1] == "luigi":
    import luigi
else:
    import batchdeps.luigi as luigi

def make(name):
    class Made(luigi.Task):
        n = luigi.IntParameter(default=1)
        def complete(self):
            return getattr(self, "done", False)
        def run(self):
            self.done = True
    Made.__name__ = name
    return Made

Renamed = make("Renamed")
print(Renamed.get_task_family(), Renamed(n=2).task_id, repr(Renamed.get_task_namespace()),
      luigi.run(["--local-scheduler", "--no-lock", "Renamed", "--n", "3"]))
'''


def test_a_class_renamed_after_it_was_made_takes_the_new_name_as_family(tmp_path: Path) -> None:
    """Class factories rename the class they make (`Made.__name__ = "X"`): Luigi reads the
    family from the name when asked, so the new name is the family, in the task id and
    on the command line; no namespace is ''."""
    answers = [done.stdout for done in through_both(tmp_path, RENAMED_CLASS)]
    assert answers[0] == answers[1]
    assert answers[1].split()[:3] == ["Renamed", "Renamed_2_fbe666d9fe", "''"]
    assert answers[1].split()[-1] == "True"


MOCK_FILES = r'''
import sys
if sys.argv[1] == "luigi":
    import luigi
    from luigi.mock import MockTarget
else:
    import batchdeps.luigi as luigi
    from batchdeps.luigi.mock import MockTarget

class Word(luigi.Task):
    n = luigi.IntParameter()
    def output(self):
        return MockTarget(f"/words/{self.n}")
    def run(self):
        with self.output().open("w") as out:
            out.write(f"word {self.n}\n")

class Joined(luigi.Task):
    def requires(self):
        return [Word(n=n) for n in range(4)]
    def output(self):
        return MockTarget("/joined.txt")
    def run(self):
        with self.output().open("w") as out:
            for target in self.input():
                with target.open("r") as src:
                    out.write(src.read())

print(luigi.build([Joined()], local_scheduler=True, workers=3))
fs = MockTarget.fs
print(fs.get_data("/joined.txt"), sorted(fs.listdir("/words")))
fs.move("/words/0", "/moved/0")
fs.remove("/words/1")
fs.copy("/words/2", "/copied/2")
print(sorted(fs.get_all_data().keys()), fs.exists("/words/1"), fs.exists("/moved/0"))
'''


def test_mock_files_are_shared_by_the_runs_worker_processes(tmp_path: Path) -> None:
    """Luigi's MockTarget keeps its files in a dict that the worker processes share (a
    multiprocessing manager): with three workers each task reads what another process
    wrote, and the script sees every file afterwards; MockFileSystem's calls as Luigi's."""
    answers = [done.stdout for done in through_both(tmp_path, MOCK_FILES)]
    assert answers[0] == answers[1]
    assert answers[1].splitlines()[:2] == [
        "True", "b'word 0\\nword 1\\nword 2\\nword 3\\n' ['/words/0', '/words/1', "
        "'/words/2', '/words/3']"]


SCHEDULER_ATTRIBUTES = r'''
import json, os, sys, time
import batchdeps.luigi as luigi

class Quiet(luigi.Task):
    """Every attribute only Luigi's scheduler (or its e-mail) reads, and retry_count."""
    disable_window = 10
    disable_hard_timeout = 5
    max_batch_size = 2
    owner_email = "ops@example.com"
    accepts_messages = True
    retry_count = 3
    def output(self):
        return luigi.LocalTarget("out/quiet.txt")
    def run(self):
        runs = int(open("quiet-runs").read()) + 1 if os.path.exists("quiet-runs") else 1
        open("quiet-runs", "w").write(str(runs))
        if runs < 3:
            raise RuntimeError(f"run {runs} fails")
        with self.output().open("w") as out:
            out.write(json.dumps([self.disable_window_seconds, self.batchable]))

class Slow(luigi.Task):
    worker_timeout = 1
    def output(self):
        return luigi.LocalTarget("out/slow.txt")
    def run(self):
        time.sleep(60)

class Ordered(luigi.Task):
    n = luigi.IntParameter()
    @property
    def priority(self):
        return self.n
    def output(self):
        return luigi.LocalTarget(f"out/ordered-{self.n}.txt")
    def run(self):
        with open("order.log", "a") as log:
            log.write(f"{self.n}\n")
        with self.output().open("w") as out:
            out.write("")

class Off(luigi.Task):
    on = luigi.BoolParameter()
    @property
    def disabled(self):
        return not self.on
    def output(self):
        return luigi.LocalTarget(f"out/off-{self.on}.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write("")

class NeedsOff(luigi.Task):
    def requires(self):
        return Off()
    def output(self):
        return luigi.LocalTarget("out/needs-off.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write("")

class Db(luigi.Task):
    n = luigi.IntParameter()
    resources = {"db": 1}
    def output(self):
        return luigi.LocalTarget(f"out/db-{self.n}.txt")
    def run(self):
        fd = os.open("db-busy", os.O_CREAT | os.O_EXCL)  # fails while another holds it
        time.sleep(0.3)
        os.close(fd)
        os.unlink("db-busy")
        with self.output().open("w") as out:
            out.write("")

if sys.argv[1] == "order":
    tasks = [Quiet(), Slow(), *(Ordered(n=n) for n in (1, 5, 3)), NeedsOff(), Off(on=True)]
    workers = 1
else:
    tasks, workers = [Db(n=n) for n in range(3)], 3
result = luigi.build(tasks, local_scheduler=True, workers=workers, detailed_summary=True)
print(json.dumps(sorted([task_id.split("_")[0], r.status.value, r.attempts, r.error]
                         for task_id, r in result.result.tasks.items())))
'''


def test_scheduler_only_class_attributes_are_taken_as_documented(tmp_path: Path) -> None:
    """docs/from-luigi.md, "Scheduler-only class attributes": priority orders the ready
    tasks, resources cap them with [resources] of luigi.cfg, worker_timeout is timeout,
    retry_count the most runs; a disabled task is not run, nor what needs it;
    disable_window(_seconds), disable_hard_timeout, max_batch_size, owner_email and
    accepts_messages change nothing of a run."""
    (tmp_path / "check.py").write_text(SCHEDULER_ATTRIBUTES)
    (tmp_path / "luigi.cfg").write_text("[resources]\ndb = 1\n[scheduler]\nretry_delay = 0\n")
    outcomes = []
    for case in ("order", "resources"):
        done = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "check.py",
                               case], cwd=tmp_path, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr
        outcomes += json.loads(done.stdout.splitlines()[-1])
    by_family: dict[str, list[list[object]]] = {}
    for family, *outcome in outcomes:
        by_family.setdefault(family, []).append(outcome)
    assert by_family["Quiet"] == [["built", 3, ""]]
    assert (tmp_path / "out" / "quiet.txt").read_text() == "[10, false]"
    [(status, _, error)] = by_family["Slow"]
    assert status == "failed" and "timed out after 1" in str(error)
    assert [status for status, *_ in by_family["Ordered"]] == ["built"] * 3
    assert (tmp_path / "order.log").read_text().split() == ["5", "3", "1"]
    assert by_family["Db"] == [["built", 1, ""]] * 3  # never two at once: no FileExistsError
    off = {status: error for status, _, error in by_family["Off"]}
    assert off.keys() == {"built", "failed"} and "is disabled" in str(off["failed"])
    assert [status for status, *_ in by_family["NeedsOff"]] == ["upstream failed"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*off*")) == ["off-True.txt"]


EXTERNALIZED = r'''
import os, sys
if sys.argv[1] == "luigi":
    import luigi
    from luigi.task import externalize
else:
    import batchdeps.luigi as luigi
    from batchdeps.luigi.task import externalize

class Make(luigi.Task):
    n = luigi.IntParameter(default=1)
    def output(self):
        return luigi.LocalTarget(f"out/make-{self.n}.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write("made")

class Top(luigi.Task):
    def requires(self):
        return [externalize(Make()), externalize(Make)(n=2)]
    def output(self):
        return luigi.LocalTarget("out/top.txt")
    def run(self):
        with self.output().open("w") as out:
            out.write("top")

first = luigi.build([Top()], local_scheduler=True, detailed_summary=True, log_level="ERROR")
os.makedirs("out", exist_ok=True)
for n in (1, 2):
    open(f"out/make-{n}.txt", "w").write("by hand")
second = luigi.build([Top()], local_scheduler=True, detailed_summary=True, log_level="ERROR")
print(first.status.name, second.status.name, sorted(os.listdir("out")),
      open("out/make-1.txt").read())
'''


def test_an_externalized_task_is_never_run_and_missing_is_a_missing_input(
        tmp_path: Path) -> None:
    """Luigi's `externalize()` of a task or a class: never run (its outputs missing are a
    missing external input), and once they are there what requires it is built."""
    luigi, ours = through_both(tmp_path, EXTERNALIZED)
    assert ours.stdout == luigi.stdout
    assert ours.stdout.strip() == ("MISSING_EXT SUCCESS ['make-1.txt', 'make-2.txt', "
                                   "'top.txt'] by hand")
