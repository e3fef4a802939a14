"""Freeing the disk that folders wider than one test used.

pytest keeps a ``tmp_path_factory`` folder until the session ends; a service that trained a
few real models there holds gigabytes. Fixtures that made such a folder call
:func:`free_disk` when they are torn down: the logs stay (they are what a failure is read
from), everything else goes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

KEEP_SUFFIXES = (".log",)


def free_disk(root: Path) -> None:
    """Delete everything under ``root`` except log files at its top level."""
    if not root.is_dir():
        return
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif not entry.name.endswith(KEEP_SUFFIXES):
            entry.unlink(missing_ok=True)
