"""Config values the lock server would refuse are exit 2 before anything runs."""

from __future__ import annotations

import pytest
from support.lockutil import LockProject

LONG_TASK = '''
import batchdeps as bd


class Named(bd.Task):
    name = bd.Parameter()

    def output(self):
        return bd.FileTarget("out/named.txt")

    def run(self):
        with self.output().open("w") as out:
            out.write("ran")
'''


@pytest.mark.parametrize("extra, message", [
    ('[lock]\nttl = inf\n', "ttl must be a number from 1 to 604800"),
    ('[lock]\nttl = 1000000\n', "ttl must be a number from 1 to 604800"),
    ('[resources]\nwarehouse = 20000\n', "warehouse must be an integer from 1 to 10000"),
])
def test_values_the_server_refuses_are_exit_2_before_anything_runs(
        lock_project: LockProject, extra: str, message: str) -> None:
    config = lock_project.root / "config.toml"
    lock_project.write_config(ttl=5)
    text = config.read_text()
    if extra.startswith("[lock]"):  # replace the ttl line of the [lock] table
        text = text.replace("ttl = 5\n", extra.split("\n", 1)[1])
    else:
        text += extra
    config.write_text(text)
    code, output = lock_project.run("Top")
    assert code == 2, output
    assert message in output and "Traceback" not in output
    assert lock_project.starts() == {}


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1:8765", "must look like http://HOST:PORT"),
    ("http://127.0.0.1:99999", "bad port"),
    ("not a url", "must look like http://HOST:PORT"),
])
def test_a_bad_lock_url_is_exit_2(lock_project: LockProject, url: str, message: str) -> None:
    config = lock_project.root / "config.toml"
    config.write_text(config.read_text().replace(lock_project.server.url, url))
    code, output = lock_project.run("Top")
    assert code == 2, output
    assert message in output and "[lock] url" in output
    assert lock_project.starts() == {}
    code, output = lock_project.run("Top", "--lock-url", url)
    assert code == 2 and message in output, output


def test_a_bad_value_from_an_environment_variable_is_not_printed(
        lock_project: LockProject) -> None:
    config = lock_project.root / "config.toml"
    config.write_text(config.read_text().replace(f'"{lock_project.server.url}"',
                                                 '"${LOCK_URL}"'))
    secret = "ftp://deploy:hunter2-secret@10.1.2.3:21"
    code, output = lock_project.run("Top", LOCK_URL=secret)
    assert code == 2, output
    assert "${LOCK_URL}" in output and "must look like http://HOST:PORT" in output
    assert "hunter2" not in output and secret not in output


def test_a_task_id_over_the_servers_key_limit_is_exit_2(lock_project: LockProject) -> None:
    (lock_project.root / "pipelines" / "named.py").write_text(LONG_TASK)
    code, output = lock_project.run("Named", "--name", "x" * 5000)
    assert code == 2, output
    assert "at most 4096 characters" in output and "Traceback" not in output
    assert not (lock_project.root / "out" / "named.txt").exists()
    code, output = lock_project.run("Named", "--name", "short")
    assert code == 0, output
