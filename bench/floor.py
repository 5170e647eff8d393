"""The floor: what plain Python needs for the same file work, with no tool in between.

    python floor.py write N FOLDER   # N small files, each written to a temp file, then renamed
    python floor.py check N FOLDER   # stat() N files (they must exist)

Run as a whole process, like the tools it is compared with.
"""

from __future__ import annotations

import os
import sys


def write(count: int, folder: str) -> None:
    tmp_dir = os.path.join(folder, ".tmp")
    os.makedirs(tmp_dir, exist_ok=True)
    for n in range(count):
        tmp_path = os.path.join(tmp_dir, f"{n}.txt.tmp")
        with open(tmp_path, "w") as handle:
            handle.write(f"{n}\n")
        os.replace(tmp_path, os.path.join(folder, f"{n}.txt"))


def check(count: int, folder: str) -> None:
    for n in range(count):
        os.stat(os.path.join(folder, f"{n}.txt"))


if __name__ == "__main__":
    mode, count, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    write(count, folder) if mode == "write" else check(count, folder)
