"""The versions of the libraries a bundle was written with (for its manifest and card)."""

from __future__ import annotations

from importlib import metadata

# Always recorded; their absence would mean a broken installation.
_REQUIRED = ("torch", "transformers", "safetensors")
# Recorded when installed: they decide whether the ONNX file and the
# sentence-transformers layout were produced and checked.
_OPTIONAL = ("onnx", "onnxruntime", "sentence-transformers")


def library_versions() -> dict[str, str]:
    """Installed versions of SearchTuner and the libraries its bundles depend on.

    Returns:
        ``{distribution name: version}``, sorted by name, so that the manifest is
        byte-identical for the same environment.
    """
    found = {"searchtuner": _searchtuner_version()}
    for name in (*_REQUIRED, *_OPTIONAL):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in _REQUIRED:
                found[name] = "unknown"
    return dict(sorted(found.items()))


def _searchtuner_version() -> str:
    # Imported here: searchtuner/__init__ may import this package.
    import searchtuner

    return str(searchtuner.__version__)
