"""A real headless browser for the status page tests: Debian's chromium driven by Playwright.

The `browser` fixture gets what it needs on a fresh machine: chromium from apt when it is
missing and the tests run as root, Playwright from PyPI when it is not installed (pinned in
constraints.txt). It skips, saying why, only where the browser cannot be had. Playwright's
own browser download (`playwright install`) is never used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]


def _install_chromium() -> str:
    """'' when chromium is there (installed now if need be), else why it cannot be had."""
    if os.path.exists(CHROMIUM):
        return ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return (f"{CHROMIUM} is missing and cannot be installed here (needs root and "
                "apt-get): apt-get install chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200,
                              check=False)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return "" if os.path.exists(CHROMIUM) else f"apt-get installed chromium but no {CHROMIUM}"


def _import_playwright() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "-c",
             str(REPO / "constraints.txt"), "playwright"],
            capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            pytest.skip(f"Playwright is not installed and pip could not install it: "
                        f"{done.stderr.strip()[-300:]}")
        from playwright import sync_api
    return sync_api


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A chromium Browser (Playwright), shared by the session's tests."""
    problem = _install_chromium()
    if problem:
        pytest.skip(f"no headless browser: {problem}")
    sync_api = _import_playwright()
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM,
                                                  args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start: say why
            pytest.skip(f"{CHROMIUM} does not start under Playwright: {exc}")
        yield chromium
        chromium.close()
