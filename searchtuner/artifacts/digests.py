"""SHA-256 digests of files (read in chunks), and folders written all at once."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from searchtuner.errors import ConfigError

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The lowercase hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a lowercase hex SHA-256 digest."""
    return isinstance(value, str) and SHA256_PATTERN.match(value) is not None


@contextmanager
def staged_folder(folder: Path, purpose: str) -> Iterator[Path]:
    """Build a folder's content in a hidden sibling, then rename it into place at once.

    Readers see either nothing or the complete folder; on any error the staging folder is
    removed and ``folder`` is left as it was.

    Args:
        folder: the destination; it must not exist or be an empty folder.
        purpose: what is being written, for the error message (e.g. "save the bundle").

    Raises:
        ConfigError: the destination exists and is not an empty folder.
    """
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} exists and is not an empty folder; {purpose} into a new one")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        staging.chmod(0o755)
        yield staging
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
