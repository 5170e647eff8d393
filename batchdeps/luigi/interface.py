"""`luigi.build()` and `luigi.run()`: a batchdeps build with Luigi's arguments and answers.

`build(tasks, local_scheduler=True, workers=N, detailed_summary=True)` runs `bd.build`
with the config batchdeps would read (config.toml, else luigi.cfg) and returns what
Luigi returns: True when no task failed, or a `LuigiRunResult` with `status` and
`summary_text`. `run()` parses the `luigi` command line first.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import ConfigError, UsageError

__all__ = ["LuigiRunResult", "LuigiStatusCode", "build", "run"]


class LuigiStatusCode(enum.Enum):
    """How a run went, as Luigi's `LuigiRunResult.status` says it."""

    SUCCESS = (":)", "there were no failed tasks or missing dependencies")
    SUCCESS_WITH_RETRY = (":)", "there were failed tasks but they all succeeded in a retry")
    FAILED = (":(", "there were failed tasks")
    FAILED_AND_SCHEDULING_FAILED = (":(", "there were failed tasks and tasks whose "
                                    "scheduling failed")
    SCHEDULING_FAILED = (":(", "there were tasks whose scheduling failed")
    NOT_RUN = (":|", "there were tasks that were not granted run permission by the scheduler")
    MISSING_EXT = (":|", "there were missing external dependencies")


class LuigiRunResult:
    """What `build(..., detailed_summary=True)` returns.

    `status` and `scheduling_succeeded` as Luigi's; `summary_text` is batchdeps' summary;
    `result` is the full `batchdeps.BuildResult` (per task, with its status and error).
    """

    def __init__(self, result: Any, worker: Any = None) -> None:
        from ..report.result import Status
        from ..report.summary import format_summary

        self.result = result
        self.worker = worker  # the luigi.worker.Worker that ran the tasks
        counts = result.counts()
        failed = counts.get(Status.FAILED, 0) + counts.get(Status.UPSTREAM_FAILED, 0)
        retried = any(r.status == Status.BUILT and r.attempts > 1 for r in result.tasks.values())
        if failed:
            self.status = LuigiStatusCode.FAILED
        elif result.stopped_by is not None:
            self.status = LuigiStatusCode.SCHEDULING_FAILED
        elif counts.get(Status.LOCK_TIMEOUT) or counts.get(Status.NOT_RUN):
            self.status = LuigiStatusCode.NOT_RUN
        elif counts.get(Status.MISSING_INPUT) or counts.get(Status.BLOCKED):
            self.status = LuigiStatusCode.MISSING_EXT
        elif retried:
            self.status = LuigiStatusCode.SUCCESS_WITH_RETRY
        else:
            self.status = LuigiStatusCode.SUCCESS
        self.scheduling_succeeded = self.status not in (
            LuigiStatusCode.FAILED, LuigiStatusCode.SCHEDULING_FAILED,
            LuigiStatusCode.FAILED_AND_SCHEDULING_FAILED)
        smiley, why = self.status.value
        self.one_line_summary = f"This progress looks {smiley} because {why}"
        self.summary_text = f"{format_summary(result)}\n{self.one_line_summary}\n"

    def __repr__(self) -> str:
        return (f"LuigiRunResult(status={self.status}, "
                f"scheduling_succeeded={self.scheduling_succeeded})")


#: build()'s keyword arguments that change nothing here (there is no scheduler process).
_IGNORED_ENV = {"local_scheduler", "no_lock", "lock_pid_dir", "lock_size", "take_lock",
                "parallel_scheduling", "parallel_scheduling_processes", "log_level",
                "logging_conf_file", "no_configure_logging", "worker_keep_alive",
                "module", "retcode_already_running", "help", "help_all"}
_REFUSED_ENV = {"scheduler_host", "scheduler_port", "scheduler_url", "assistant"}


def load_run_config() -> Any:
    """The config a Luigi run uses: config.toml (or $BATCHDEPS_CONFIG), else luigi.cfg."""
    from ..config import load_config

    config = load_config()
    if "modules" not in config.batchdeps:
        # The tasks come from the caller (`--module`, or imported by the script): the
        # default `pipelines` package is not looked for, unless config.toml names it.
        config.batchdeps["modules"] = []
    check_luigi_sections()
    return config


def check_luigi_sections() -> None:
    """Every luigi.cfg (or luigi.toml) section is one batchdeps reads, or names a task or
    Config class (or is the section a parameter's `config_path` reads from).

    A section for something batchdeps does not do (a Hadoop, database or mail service, a
    `[retcode]` table) is an error naming it, never a setting silently lost.
    """
    from ..luigi_files import LUIGI_HONOURED, LUIGI_IGNORED, luigi_cfg_paths, read_luigi_files
    from .task_register import Register

    paths = luigi_cfg_paths()
    if not paths:
        return
    sections = read_luigi_files(paths)
    families = set(Register.task_names())
    known = {section for section, _ in LUIGI_HONOURED} | set(LUIGI_IGNORED) | {"resources"}
    known |= {param.config_path["section"] for family in families
              for _, param in Register.get_task_cls(family).get_params()
              if getattr(param, "config_path", None)}
    for section in sections:
        if section in known or section in families:
            continue
        why = _UNHONOURED_SECTIONS.get(section, "it names no task or Config class of the "
                                                "modules loaded")
        raise ConfigError(f"{paths[-1]}: [{section}]: batchdeps cannot honour this section: "
                          f"{why} (see docs/from-luigi.md, \"luigi.cfg\")")


_UNHONOURED_SECTIONS = {
    "retcode": "batchdeps' exit codes are fixed (docs/from-luigi.md, \"[retcode]\")",
    "email": "alerts are `[notify]` in config.toml",
    "smtp": "alerts are `[notify]` in config.toml",
    "batch_email": "alerts are `[notify]` in config.toml",
    "task_history": "batchdeps keeps its own history (`batchdeps history`)",
    "hdfs": "luigi.contrib.hdfs is not supported",
    "hadoop": "luigi.contrib.hadoop is not supported",
    "spark": "luigi.contrib.spark is not supported",
    "postgres": "luigi.contrib.postgres is not supported",
    "redshift": "luigi.contrib.redshift is not supported",
    "bigquery": "luigi.contrib.bigquery is not supported",
    "s3": "S3 options are `[storage.s3]` in config.toml",
}


def run_tasks(tasks: list[Any], workers: int | None = None, options: dict[str, Any] | None = None,
              lock_url: Any = None) -> Any:
    """batchdeps' BuildResult of one build of `tasks` with the config a Luigi run reads,
    and `options` (run options by batchdeps' names: `timeout`, `retries`) over it."""
    from .. import api

    config = load_run_config()
    config.batchdeps.update(options or {})
    return api.build(tasks, workers=workers, config=config, lock_url=lock_url)


def build(tasks: Any, worker_scheduler_factory: Any = None, detailed_summary: bool = False,
          **env_params: Any) -> Any:
    """Build `tasks` (Luigi's `build`): True unless a task failed, or a LuigiRunResult.

    As in Luigi, through a `luigi.worker.Worker`: each task is added, then run."""
    from .worker import Worker

    if worker_scheduler_factory is not None:
        raise UsageError("build(worker_scheduler_factory=...): batchdeps has no scheduler "
                         "to make (docs/from-luigi.md, \"Running\")")
    refused = sorted(set(env_params) & _REFUSED_ENV)
    if refused:
        raise UsageError(f"build({refused[0]}=...): there is no central scheduler; use "
                         "lock_url= with `batchdeps lock-server` (docs/from-luigi.md, "
                         "\"Running\")")
    workers = env_params.pop("workers", None)
    lock_url = env_params.pop("lock_url", None)
    unknown = sorted(set(env_params) - _IGNORED_ENV)
    if unknown:
        raise UsageError(f"build(): unknown argument {unknown[0]}")
    if workers is not None:
        try:
            workers = int(workers)
        except (TypeError, ValueError):
            raise UsageError(f"build(workers={workers!r}): a whole number is needed") from None
    requested = list(tasks) if isinstance(tasks, Iterable) else [tasks]
    worker = Worker._for_build(workers, lock_url)
    with worker:
        for task in requested:
            worker.add(task)
        worker.run()
    outcome = worker.result
    return outcome if detailed_summary else outcome.scheduling_succeeded


def run(cmdline_args: Sequence[str] | None = None, main_task_cls: Any = None,
        worker_scheduler_factory: Any = None, use_dynamic_argparse: Any = None,
        local_scheduler: bool = False, detailed_summary: bool = False) -> Any:
    """Parse a `luigi` command line and build its task; returns as `build()`.

    A bad command line (an unknown option, a value missing) prints one line naming it and
    exits 2 (SystemExit), as Luigi's argparse does; a task family it does not know raises
    Luigi's TaskClassNotFoundException.
    """
    from ..errors import UnknownTaskError

    try:
        outcome = _run(cmdline_args, main_task_cls, worker_scheduler_factory, local_scheduler)
    except UsageError as exc:
        if isinstance(exc, UnknownTaskError):  # Luigi's TaskClassNotFoundException
            raise
        print(f"luigi (batchdeps): error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    return outcome if detailed_summary else outcome.scheduling_succeeded


def _run(cmdline_args: Sequence[str] | None, main_task_cls: Any,
         worker_scheduler_factory: Any, local_scheduler: bool) -> LuigiRunResult:
    from .cmdline_parser import CmdlineParser

    args = list(sys.argv[1:] if cmdline_args is None else cmdline_args)
    if main_task_cls is not None:
        args = [main_task_cls.get_task_family(), *args]
    with CmdlineParser.global_instance(args, allow_override=True) as parser:
        task = parser.get_task_obj()
        result = build([task], worker_scheduler_factory=worker_scheduler_factory,
                       detailed_summary=True, workers=parser.workers,
                       lock_url=parser.options.get("lock-url"))
    assert isinstance(result, LuigiRunResult)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """The `luigi` command: exit with batchdeps' codes (docs/from-luigi.md, "[retcode]")."""
    from ..errors import BatchdepsError, ExitCode

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    args = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--debug"]
    try:
        outcome = _run(args, None, None, True)
    except BatchdepsError as exc:
        if debug:
            raise
        print(f"luigi (batchdeps): error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    from ..errors import BrokenTaskError

    if not isinstance(outcome.result.stopped_by, BrokenTaskError):  # that one was printed
        print(outcome.summary_text, file=sys.stderr)
    sys.exit(int(outcome.result.exit_code))
