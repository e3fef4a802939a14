"""Bundle archives: one deterministic tar file per bundle, and a safe way to unpack it.

The same bundle always packs to the same bytes (sorted entries, mtime 0, uid/gid 0, no
owner names, fixed modes, no compression), so the archive's SHA-256 is a content address:
publishing the same checkpoint twice gives the same digest, hence the same handle.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from searchtuner.artifacts.digests import sha256_file, staged_folder
from searchtuner.artifacts.errors import BundleError
from searchtuner.artifacts.manifest import MANIFEST_NAME, check_member_name, verify_bundle

_CHUNK = 1 << 20


def pack_bundle(directory: str | Path, archive_path: str | Path) -> str:
    """Pack a bundle folder into an uncompressed tar, verifying it first.

    Only the manifest and the files it lists are packed, with the folders that hold them
    (and empty folders such as ``3_Normalize``).

    Args:
        directory: the bundle folder.
        archive_path: the ``.tar`` file to write (replaced if it exists).

    Returns:
        The archive's SHA-256 (lowercase hex).

    Raises:
        BundleError: the bundle fails verification (nothing is written).
    """
    folder = Path(directory)
    manifest = verify_bundle(folder)
    names = {MANIFEST_NAME, *manifest.files}
    folders = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_dir() and not path.is_symlink()
    }
    for name in names:
        parts = name.split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    target = Path(archive_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(names | folders):
                path = folder / name
                if name in folders:
                    tar.addfile(_member(name, is_dir=True, size=0))
                    continue
                with open(path, "rb") as handle:
                    member = _member(name, is_dir=False, size=path.stat().st_size)
                    tar.addfile(member, handle)
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return sha256_file(target)


def _member(name: str, *, is_dir: bool, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.size = size
    return info


def unpack_bundle(archive: str | Path, directory: str | Path) -> Path:
    """Unpack a bundle archive into a new folder, refusing anything unsafe.

    Members with absolute paths, ``..`` parts, links, devices or duplicates are refused
    before anything is written. The folder appears only once fully unpacked.

    Args:
        archive: a tar (optionally gzip/bz2/xz-compressed) made by :func:`pack_bundle`.
        directory: the folder to create; it must not exist or be empty.

    Returns:
        The folder.

    Raises:
        BundleError: the archive is corrupt, truncated or holds an unsafe member.
        ConfigError: the destination exists and is not empty.
    """
    source, folder = Path(archive), Path(directory)
    with staged_folder(folder, "unpack") as staging:
        try:
            with tarfile.open(source, "r:*") as tar:
                members = tar.getmembers()
                _check_members(members, source)
                for member in members:
                    _extract(tar, member, staging)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise BundleError(
                f"the archive {source} is corrupt or truncated ({err}); fetch it again"
            ) from err
        if not (staging / MANIFEST_NAME).is_file():
            raise BundleError(f"the archive {source} holds no {MANIFEST_NAME}; it is not a bundle")
    return folder


def _check_members(members: list[tarfile.TarInfo], source: Path) -> None:
    seen: set[str] = set()
    for member in members:
        name = member.name.removesuffix("/")
        if not (member.isfile() or member.isdir()):
            raise BundleError(
                f"the archive {source} holds {member.name!r}, which is a link or a device; "
                "a bundle archive holds only files and folders"
            )
        check_member_name(name, f"the archive {source}")
        if name in seen:
            raise BundleError(f"the archive {source} holds {name!r} twice")
        seen.add(name)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    target = root / member.name.removesuffix("/")
    if member.isdir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    stream = tar.extractfile(member)
    if stream is None:  # pragma: no cover - regular files always have a stream
        raise BundleError(f"cannot read {member.name!r} from the archive")
    with stream, open(target, "wb") as out:
        shutil.copyfileobj(stream, out, _CHUNK)
