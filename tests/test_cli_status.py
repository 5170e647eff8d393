"""End-to-end: `batchdeps status`, `graph` and `list` through the real command."""

from __future__ import annotations

import json
import os
import signal

from support.project import Project
from support.waiting import wait_for

A, B, C = "A(day=2026-11-24)", "B(day=2026-11-24)", "C(day=2026-11-24)"
D = "D(day=2026-11-24, count=3)"


def nodes_of(stdout: str) -> dict[str, dict]:
    return {node["task_id"]: node for node in json.loads(stdout)["nodes"]}


def test_status_exit_codes_follow_make_q(project: Project) -> None:
    fresh = project.run("status", "D")
    assert fresh.returncode == 1, fresh.stdout + fresh.stderr  # something would be built
    assert project.run("run", "D").returncode == 0
    done = project.run("status", "D")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[complete]" in done.stdout.splitlines()[0]
    blocked = project.run("status", "NeedsMissing")
    assert blocked.returncode == 3
    assert "[blocked]" in blocked.stdout and "in/absent.txt missing" in blocked.stdout
    assert project.run("status", "Nope").returncode == 2
    assert project.run("status", "D", "--day", "tomorrow").returncode == 2
    usage = project.run("status")
    assert usage.returncode == 2 and "missing TASK" in usage.stderr
    assert project.runs().count(A) == 1  # status never runs anything


def test_status_json_has_every_node_with_state_outputs_reasons_and_edges(
        project: Project) -> None:
    (project.root / "in/source.txt").unlink()
    result = project.run("status", "D", "--format", "json")
    assert result.returncode == 3
    document = json.loads(result.stdout)
    nodes = {n["task_id"]: n for n in document["nodes"]}
    assert set(nodes) == {"Source(name=source)", A, B, C, D}
    assert nodes["Source(name=source)"]["state"] == "external-missing"
    assert nodes[D]["state"] == "blocked"
    assert nodes[D]["family"] == "D" and nodes[D]["params"] == {"day": "2026-11-24",
                                                                "count": "3"}
    assert nodes[D]["outputs"] == ["out/d-2026-11-24.txt"]
    assert any("in/source.txt missing" in r for r in nodes[A]["reasons"])
    assert nodes[D]["blocked_by"] == "Source(name=source)"
    assert nodes[D]["upstream_missing"] is None and nodes[D]["holder"] is None
    assert sorted(map(tuple, document["edges"])) == sorted(
        [(D, B), (D, C), (B, A), (C, A), (A, "Source(name=source)")])


def test_status_shows_a_shared_subtree_once_and_limits_depth(project: Project) -> None:
    lines = project.run("status", "D").stdout.splitlines()
    a_lines = [line for line in lines if A in line]
    assert len(a_lines) == 2 and "(shown above)" in a_lines[1]
    assert sum("Source(name=source)" in line for line in lines) == 1
    shallow = project.run("status", "D", "--depth", "1").stdout
    assert A not in shallow and B in shallow and "below --depth" in shallow


def test_status_shows_a_task_another_run_is_building_as_running(project: Project) -> None:
    holder = project.popen("run", "Other", SLEEP_OTHER="30")
    try:
        wait_for(lambda: "Other()" in project.runs("sleeping"), what="the run to start")
        result = project.run("status", "Other", "--format", "json")
        node = nodes_of(result.stdout)["Other()"]
        assert node["state"] == "running"
        assert node["label"] == "running here" and str(holder.pid) in node["holder"]
        assert result.returncode == 1
        assert "[running here]" in project.run("status", "Other").stdout
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()


def test_graph_formats(project: Project) -> None:
    assert project.run("run", "B").returncode == 0
    result = project.run("graph", "D", "--format", "json")
    assert result.returncode == 0, result.stderr
    nodes = nodes_of(result.stdout)
    assert nodes[B]["inputs"] == ["out/a-2026-11-24.txt"]
    assert nodes[B]["state"] == "complete" and nodes[C]["state"] == "missing"
    assert nodes[D]["inputs"] == ["out/b-2026-11-24.txt", "out/c-2026-11-24.txt"]
    assert len(json.loads(result.stdout)["edges"]) == 5
    dot = project.run("graph", "D", "--format", "dot").stdout
    assert dot.startswith("digraph") and dot.count(" -> ") == 5
    mermaid = project.run("graph", "D", "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart") and mermaid.count(" --> ") == 5
    bad = project.run("graph", "D", "--format", "png")
    assert bad.returncode == 2 and "png" in bad.stderr


def test_list_shows_every_family_with_parameters_and_kind(project: Project) -> None:
    text = project.run("list")
    assert text.returncode == 0, text.stderr
    assert "Source (external)" in text.stdout and "Both (wrapper)" in text.stdout
    assert "--day" in text.stdout and "the day to build" in text.stdout
    families = {f["family"]: f for f in json.loads(project.run("list", "--json").stdout)}
    assert families["Source"]["kind"] == "external"
    assert families["D"]["kind"] == "task"
    assert families["D"]["summary"] == "Bottom of the diamond: needs B and C, which both need A."
    params = {p["name"]: p for p in families["D"]["parameters"]}
    assert params["count"] == {"name": "count", "flag": "--count", "type": "int",
                               "default": "3", "default_from": "code",
                               "description": "how many things", "range": True}
    assert families["Leaf"]["parameters"][0]["default_from"] == "required"
    twice = project.run("list", "--config", "config.toml", "--config", "other.toml")
    assert twice.returncode == 2 and "given 2 times" in twice.stderr


TREE_PIPELINE = """
import batchdeps as bd


class Node(bd.Task):
    '''Node n of a 10-ary tree of `size` nodes; node n needs nodes 10n+1 .. 10n+10.'''
    n = bd.IntParameter(default=0)
    size = bd.IntParameter(default=10000)

    def requires(self):
        first = 10 * self.n + 1
        return [Node(n=c, size=self.size) for c in range(first, min(first + 10, self.size))]

    def output(self):
        return bd.FileTarget(f"tree/{self.n}.txt")
"""


def test_status_graph_and_forcing_over_a_generated_dag_of_10000_tasks(
        project: Project) -> None:
    project.write("pipelines/tree.py", TREE_PIPELINE)
    (project.root / "tree").mkdir()
    for n in range(10000):  # as if built: the commands only look at the outputs
        path = project.root / f"tree/{n}.txt"
        path.write_text("")
        os.utime(path, (1_700_000_000, 1_700_000_000))  # all as old: none is "newer"
    status = project.run("status", "Node", "--format", "json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert len(document["nodes"]) == 10000 and len(document["edges"]) == 9999
    assert document["counts"]["complete"] == 10000

    (project.root / "tree/5555.txt").unlink()  # a leaf under 555 -> 55 -> 5 -> 0
    text = project.run("status", "Node")
    assert text.returncode == 0
    assert text.stdout.startswith("Node(n=0, size=10000)  [complete, upstream missing]")
    graph = project.run("graph", "Node", "--format", "json")
    nodes = nodes_of(graph.stdout)
    assert len(nodes) == 10000 and nodes["Node(n=5555, size=10000)"]["state"] == "missing"

    dry = project.run("run", "Node", "--force-from", "Node(n=5555, size=10000)", "--dry-run")
    assert dry.returncode == 1
    forced = [line.split()[1] for line in dry.stdout.splitlines() if line.startswith("run ")]
    assert forced == ["Node(n=5555,", "Node(n=555,", "Node(n=55,", "Node(n=5,", "Node(n=0,"]
    everything = project.run("run", "Node", "--force-upstream", "--dry-run")
    assert everything.returncode == 1
    assert "10000 task(s) would run; 0 blocked" in everything.stdout
    dot = project.run("graph", "Node", "--format", "dot").stdout
    assert dot.count(" -> ") == 9999 and dot.count("fillcolor=khaki") == 1  # the one missing


def test_status_asks_the_lock_server_and_shows_a_task_held_on_another_host(
        project: Project, lock_server) -> None:
    code, answer = lock_server.request("POST", "/v1/acquire", {
        "key": "Other()", "holder": {"host": "build-7", "pid": 4242, "run_id": "nightly"},
        "ttl": 120})
    assert code == 200, answer
    env = {"BATCHDEPS_LOCK_TOKEN": lock_server.token}
    result = project.run("status", "Other", "--lock-url", lock_server.url, "--format", "json",
                         **env)
    node = nodes_of(result.stdout)["Other()"]
    assert node["state"] == "running" and node["label"] == "running elsewhere"
    assert "build-7" in node["holder"] and result.returncode == 1
    text = project.run("status", "Other", "--lock-url", lock_server.url, **env)
    assert "[running elsewhere]" in text.stdout and "build-7" in text.stdout


def test_status_with_the_lock_server_down_warns_and_still_answers(project: Project) -> None:
    result = project.run("status", "Other", "--lock-url", "http://127.0.0.1:9")
    assert result.returncode == 1  # Other is missing
    assert "lock state unknown" in result.stderr and "[missing]" in result.stdout


def test_status_on_an_upstream_newer_object_store_output(project: Project) -> None:
    project.write("pipelines/mem.py", """
        import batchdeps as bd

        class MemRaw(bd.ExternalTask):
            def output(self):
                return bd.FileTarget("memory://bucket/raw.txt")

        class MemUse(bd.Task):
            def requires(self):
                return MemRaw()

            def output(self):
                return bd.FileTarget("memory://bucket/use.txt")
    """)
    # memory:// lives in one process: write the files from a task module hook instead.
    project.write("pipelines/__init__.py", """
        import time
        import batchdeps as bd
        for name in ("use", "raw"):  # raw is written last: newer than its user
            with bd.FileTarget(f"memory://bucket/{name}.txt").open("w") as out:
                out.write(name)
            time.sleep(0.05)
    """)
    lines = project.run("status", "MemUse").stdout.splitlines()
    assert "[complete, upstream newer]" in lines[0], lines
