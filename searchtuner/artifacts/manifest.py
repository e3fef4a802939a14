"""``searchtuner.json``: what a bundle holds, how to rebuild its model, and every file's digest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from searchtuner.artifacts.digests import is_sha256, sha256_file
from searchtuner.artifacts.errors import BundleError
from searchtuner.errors import ConfigError
from searchtuner.models.embedding_model import ModelSpec
from searchtuner.models.preprocessing import (
    ImagePreprocessor,
    Preprocessor,
    TensorPreprocessor,
    TextPreprocessor,
)

FORMAT_VERSION = 1
MANIFEST_NAME = "searchtuner.json"


@dataclass(frozen=True)
class BundleManifest:
    """The content of ``searchtuner.json``.

    Attributes:
        format_version: the bundle layout version (see ``FORMAT_VERSION``).
        spec: the model's spec: everything beyond the weights that rebuilds it.
        preprocessing: the preprocessor's ``config()``.
        files: every file of the bundle but this one, by relative POSIX path → SHA-256.
        library_versions: ``{distribution: version}`` of the writing environment.
        card: the model card's fields (``ModelCardInfo.to_dict()``).
    """

    format_version: int
    spec: ModelSpec
    preprocessing: dict[str, Any]
    files: dict[str, str]
    library_versions: dict[str, str] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Sorted keys and a fixed indent: the same manifest is always the same bytes."""
        data = {
            "format_version": self.format_version,
            "spec": self.spec.to_dict(),
            "preprocessing": self.preprocessing,
            "files": dict(sorted(self.files.items())),
            "library_versions": self.library_versions,
            "card": self.card,
        }
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = MANIFEST_NAME) -> BundleManifest:
        """Parse and check a manifest.

        Raises:
            BundleError: not JSON, a missing or mistyped field, an unsafe file name, a newer
                format than this SearchTuner reads.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise BundleError(f"{source} is not valid JSON ({err}); re-save the bundle") from err
        if not isinstance(data, dict):
            raise BundleError(f"{source} must hold a JSON object; re-save the bundle")
        version = data.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise BundleError(f"{source} has no valid format_version; re-save the bundle")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{source} is bundle format {version}, but this SearchTuner reads formats up "
                f"to {FORMAT_VERSION}; upgrade searchtuner"
            )
        try:
            spec = ModelSpec(**data["spec"])
            preprocessing = dict(data["preprocessing"])
            files = dict(data["files"])
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(
                f"{source} lacks a valid spec, preprocessing or files entry ({err}); "
                "re-save the bundle"
            ) from err
        for name, digest in files.items():
            check_member_name(name, source)
            if not is_sha256(digest):
                raise BundleError(f"{source}: the digest of {name!r} is not a SHA-256 hex string")
        return cls(
            format_version=version,
            spec=spec,
            preprocessing=preprocessing,
            files=files,
            library_versions=dict(data.get("library_versions") or {}),
            card=dict(data.get("card") or {}),
        )


def check_member_name(name: str, source: str) -> None:
    """Refuse names that could point outside the bundle folder.

    Raises:
        BundleError: an empty or absolute name, a ``..`` part, or a backslash.
    """
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or path.is_absolute()
        or any(part in ("..", "") for part in name.split("/"))
    ):
        raise BundleError(
            f"{source} names an unsafe path {name!r}; a bundle only holds relative paths "
            "inside its folder"
        )


def read_manifest(directory: str | Path) -> BundleManifest:
    """Read a bundle folder's ``searchtuner.json``.

    Raises:
        BundleError: the folder has none, or it is malformed.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(
            f"{directory} is not a SearchTuner bundle (no {MANIFEST_NAME}); save one with "
            "searchtuner.artifacts.save_bundle(model, folder)"
        )
    return BundleManifest.from_json(path.read_text(encoding="utf-8"), source=str(path))


def bundle_files(directory: Path) -> list[str]:
    """Every regular file below ``directory`` except the manifest, as sorted POSIX paths."""
    found = []
    for path in directory.rglob("*"):
        if path.is_file() or path.is_symlink():
            name = path.relative_to(directory).as_posix()
            if name != MANIFEST_NAME:
                found.append(name)
    return sorted(found)


def verify_bundle(directory: str | Path) -> BundleManifest:
    """Check every file against the manifest's digests before anything is read from it.

    Args:
        directory: a bundle folder.

    Returns:
        The manifest.

    Raises:
        BundleError: a listed file is missing or differs from its digest, a file is present
            that the manifest does not list, or a file is a symbolic link. The message lists
            every problem found.
    """
    folder = Path(directory)
    manifest = read_manifest(folder)
    problems = []
    for name, expected in sorted(manifest.files.items()):
        path = folder / name
        if path.is_symlink():
            problems.append(f"{name} is a symbolic link")
        elif not path.is_file():
            problems.append(f"{name} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{name} does not match its SHA-256 (modified or corrupted)")
    for name in bundle_files(folder):
        if name not in manifest.files:
            problems.append(f"{name} is not listed in {MANIFEST_NAME}")
    if problems:
        raise BundleError(
            f"the bundle {folder} fails verification, so nothing was loaded: "
            + "; ".join(problems)
            + ". Fetch or save the bundle again."
        )
    return manifest


def build_preprocessor(directory: str | Path, manifest: BundleManifest) -> Preprocessor:
    """The bundle's preprocessor, rebuilt from its manifest (and tokenizer files for text).

    Raises:
        BundleError: an unknown preprocessing type, or tokenizer files that do not load.
    """
    config = manifest.preprocessing
    kind = config.get("type")
    try:
        if kind == "text":
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(Path(directory), local_files_only=True)
            return TextPreprocessor(tokenizer, int(config["max_length"]))
        if kind == "image":
            return ImagePreprocessor(int(config["size"]), config["mean"], config["std"])
        if kind == "tensor":
            return TensorPreprocessor(config["input_shape"])
    except (OSError, KeyError, TypeError, ValueError, ConfigError) as err:
        raise BundleError(f"cannot rebuild the bundle's {kind} preprocessing: {err}") from err
    raise BundleError(
        f"unknown preprocessing type {kind!r} in {MANIFEST_NAME}; allowed: text, image, tensor"
    )
