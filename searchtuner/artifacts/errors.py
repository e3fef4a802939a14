"""The error a bundle, an archive or a handle raises when its content cannot be trusted."""

from __future__ import annotations

from searchtuner.errors import SearchTunerError


class BundleError(SearchTunerError, ValueError):
    """A model bundle, archive or handle that is malformed, incomplete or tampered with.

    Nothing is loaded from it; the message names the file and what to do.
    """


class CheckpointError(BundleError):
    """A model checkpoint that is not SearchTuner's, is damaged, or cannot be rebuilt here.

    Nothing is loaded from it; the message names the checkpoint and what to do.
    """
