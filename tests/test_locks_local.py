"""Machine-local locks: exclusive across processes, freed by death, resource slots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from batchdeps.locks.local import LocalLockProvider

HOLD = textwrap.dedent('''
    import sys, time
    from batchdeps.locks.local import LocalLockProvider
    provider = LocalLockProvider(sys.argv[1])
    provider.start()
    lease = provider.try_acquire(sys.argv[2])
    print("held" if lease else "busy", flush=True)
    time.sleep(60)
''')


def hold_in_subprocess(lock_dir: Path, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_dir), key],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def probe(lock_dir: Path, key: str) -> str:
    """'held' or 'busy': what another process gets when it tries `key` now."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_dir), key],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    answer = proc.stdout.readline().strip()
    proc.kill()
    proc.wait()
    return answer


def test_lock_is_exclusive_across_processes_and_freed_by_kill_9(tmp_path: Path) -> None:
    provider = LocalLockProvider(str(tmp_path))
    provider.start()
    holder = hold_in_subprocess(tmp_path, "Task(x=1)")
    try:
        assert provider.try_acquire("Task(x=1)") is None
        assert str(holder.pid) in provider.holder("Task(x=1)")
        assert provider.try_acquire("Task(x=2)") is not None  # other keys are free
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    lease = provider.try_acquire("Task(x=1)")
    assert lease is not None
    provider.check(lease)
    provider.close()


def test_release_frees_the_key_for_another_process(tmp_path: Path) -> None:
    provider = LocalLockProvider(str(tmp_path))
    provider.start()
    lease = provider.try_acquire("K")
    assert lease is not None
    provider.release(lease)
    provider.release(lease)  # releasing twice is harmless
    assert [p.name for p in tmp_path.iterdir()] == ["locks"]  # one file, whatever the keys
    other = hold_in_subprocess(tmp_path, "K")  # asserts the other process got it
    other.kill()
    other.wait()


def test_resource_pool_grants_at_most_its_slots(tmp_path: Path) -> None:
    provider = LocalLockProvider(str(tmp_path))
    provider.start()
    first = provider.try_acquire_resource("warehouse", 2)
    second = provider.try_acquire_resource("warehouse", 2)
    assert first is not None and second is not None
    assert provider.try_acquire_resource("warehouse", 2) is None
    provider.release(first)
    assert provider.try_acquire_resource("warehouse", 2) is not None
    provider.close()


def test_same_process_cannot_take_a_held_key_twice(tmp_path: Path) -> None:
    provider = LocalLockProvider(str(tmp_path))
    provider.start()
    assert provider.try_acquire("K") is not None
    assert provider.try_acquire("K") is None
    provider.close()
    assert provider.try_acquire("K") is not None


def test_two_providers_in_one_process_exclude_each_other_and_close_keeps_the_other(
        tmp_path: Path) -> None:
    first, second = LocalLockProvider(str(tmp_path)), LocalLockProvider(str(tmp_path))
    first.start()
    second.start()
    lease = first.try_acquire("K")
    assert lease is not None
    assert second.try_acquire("K") is None
    assert "this run" in second.holder("K")
    other = second.try_acquire("L")
    assert other is not None
    first.close()  # releases K only: L stays held by `second`
    assert second.try_acquire("K") is not None
    assert probe(tmp_path, "L") == "busy"  # another process cannot take it
    second.close()
    assert probe(tmp_path, "L") == "held"


def test_holder_of_a_free_key_is_empty(tmp_path: Path) -> None:
    provider = LocalLockProvider(str(tmp_path))
    provider.start()
    assert provider.holder("nobody") == ""


def _run_start(tmp: Path) -> subprocess.CompletedProcess[str]:
    """LocalLockProvider().start() in a process whose temp dir is `tmp` (the per-user folder)."""
    env = {k: v for k, v in os.environ.items() if k != "BATCHDEPS_LOCK_DIR"}
    env["TMPDIR"] = str(tmp)
    script = ("from batchdeps.locks.local import LocalLockProvider\n"
              "p = LocalLockProvider(); p.start(); print(p.lock_dir)\n")
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=30, check=False)


def test_the_per_user_folder_is_made_private(tmp_path: Path) -> None:
    done = _run_start(tmp_path)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder == tmp_path / f"batchdeps-locks-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_per_user_folder_of_someone_else_or_writable_by_others_is_refused(
        tmp_path: Path) -> None:
    import pwd

    folder = tmp_path / f"batchdeps-locks-{os.getuid()}"
    folder.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(folder, nobody, -1)  # made first by another user
    done = _run_start(tmp_path)
    assert done.returncode != 0
    assert f"belongs to user id {nobody}" in done.stderr and str(folder) in done.stderr
    assert not (folder / "locks").exists()
    os.chown(folder, os.getuid(), -1)
    folder.chmod(0o777)  # ours, but others may write in it
    done = _run_start(tmp_path)
    assert done.returncode != 0 and "others may write in it (mode 777)" in done.stderr
    folder.rmdir()
    folder.symlink_to(tmp_path)  # a symlink planted in its place
    done = _run_start(tmp_path)
    assert done.returncode != 0 and "not a folder" in done.stderr
