"""What recording run history costs: the 10,000-task tree build with history on and off.

    python bench/history_cost.py [--size 10000] [--reps 7] [--dir /dev/shm]

Both variants run the same DAG (`bench/dags/bd_dags.py` TreeNode) as whole processes,
interleaved A B A B, each into a fresh folder; "on" is the default (the history file beside
config.toml, kept across the runs like a real project's), "off" sets `[history] enabled =
false`. Prints the median wall and CPU seconds of each and the median of the paired ratios.

The whole-process pairs are the measure to read. Run them on tmpfs (`--dir /dev/shm`):
there the disk's swings are out of the picture and 7 pairs tell 5% apart. The script also
times the history listener alone (it records the events of one in-process build, then
feeds them to a fresh listener), but that measure cannot see what the listener does to the
runner beside it: when the writes ran in a thread of their own, the listener alone cost
0.22 s of CPU per 10,000 tasks while the whole build took 0.8 s longer (the thread took
Python's GIL at nearly every system call of the runner; see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import Sample, child_env, run_process

BIN = Path(sys.executable).parent


def direct(workspace: Path, size: int, reps: int) -> tuple[float, float]:
    """CPU seconds of the history listener over one build's events vs. the build's own."""
    import time

    sys.path.insert(0, str(workspace))
    from bd_dags import TreeNode  # type: ignore[import-not-found]

    import batchdeps as bd
    from batchdeps.config import load_config
    from batchdeps.history.listener import HistoryListener

    class Keep:
        def __init__(self) -> None:
            self.events: list[object] = []

        def on_event(self, event: object) -> None:
            self.events.append(event)

    builds: list[float] = []
    listeners: list[float] = []
    main_thread: list[float] = []
    for rep in range(reps):
        keep = Keep()
        root = workspace / f"direct-{rep}"
        started = time.process_time()
        result = bd.build(TreeNode(size=size, root=str(root)),
                          config=load_config(str(workspace / "off.toml")), listeners=[keep])
        builds.append(time.process_time() - started)
        assert result.ok
        shutil.rmtree(root)
        listener = HistoryListener(str(workspace / "direct-history.db"))
        started, main_started = time.process_time(), time.thread_time()
        for event in keep.events:
            listener.on_event(event)  # type: ignore[arg-type]
        main_thread.append(time.thread_time() - main_started)
        listener.close()
        listeners.append(time.process_time() - started)
    build, spent = statistics.median(builds), statistics.median(listeners)
    runner = statistics.median(main_thread)
    print(f"in-process build of {size:,}: {build:.3f} s CPU; the history listener over its "
          f"{len(keep.events):,} events: {spent:.3f} s CPU in all = {100 * spent / build:.1f}%, "
          f"of which {runner:.3f} s = {100 * runner / build:.1f}% in the runner's thread "
          f"(medians of {reps})")
    return spent, runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--dir", default=None,
                        help="where the workspace goes (default: the system's temp folder)")
    parser.add_argument("--direct-only", action="store_true",
                        help="only the in-process measure of the listener")
    args = parser.parse_args()
    workspace = Path(tempfile.mkdtemp(prefix="batchdeps-history-bench-", dir=args.dir))
    try:
        for source in (HERE / "dags").glob("bd_dags.py"):
            shutil.copy(source, workspace / source.name)
        configs = {
            "on": workspace / "on.toml",
            "off": workspace / "off.toml",
        }
        configs["on"].write_text('[batchdeps]\nmodules = ["bd_dags"]\n')
        configs["off"].write_text('[batchdeps]\nmodules = ["bd_dags"]\n[history]\nenabled = false\n')
        spent, runner = direct(workspace, args.size, args.reps)
        if args.direct_only:
            return
        env = child_env("BATCHDEPS_")
        env["PYTHONPATH"] = str(workspace)
        env["BATCHDEPS_LOCK_DIR"] = str(workspace / "locks")
        samples: dict[str, list[Sample]] = {"on": [], "off": []}
        for rep in range(args.reps + 1):  # the first pair warms the caches and is dropped
            for variant in (("on", "off") if rep % 2 else ("off", "on")):
                root = workspace / f"out-{variant}"
                sample = run_process(
                    [str(BIN / "batchdeps"), "run", "TreeNode", "--size", str(args.size),
                     "--root", str(root), "--config", str(configs[variant])],
                    str(workspace), env, str(workspace / "processes.log"))
                if sample.code != 0:
                    raise SystemExit(f"{variant}: exit {sample.code}; see "
                                     f"{workspace / 'processes.log'}")
                shutil.rmtree(root)
                if rep:
                    samples[variant].append(sample)
        history = workspace / "batchdeps-history.db"
        print(f"tree of {args.size:,}, {args.reps} pairs; history file "
              f"{history.stat().st_size / 1e6:.1f} MB after {args.reps + 1} runs")
        for variant in ("off", "on"):
            wall = statistics.median(s.seconds for s in samples[variant])
            cpu = statistics.median(s.cpu_seconds for s in samples[variant])
            print(f"history {variant:3}: wall {wall:.3f} s, cpu {cpu:.3f} s (medians)")
        cli_cpu = statistics.median(s.cpu_seconds for s in samples["off"])
        cli_wall = statistics.median(s.seconds for s in samples["off"])
        print(f"the listener against the command's own build (history off): "
              f"{100 * spent / cli_cpu:.1f}% of its CPU in all, "
              f"{100 * runner / cli_wall:.1f}% of its wall time in the runner's thread")
        for measure in ("seconds", "cpu_seconds"):
            ratios = [getattr(a, measure) / getattr(b, measure)
                      for a, b in zip(samples["on"], samples["off"])]
            print(f"on/off {measure:11}: median {statistics.median(ratios):.3f} "
                  f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)})")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
