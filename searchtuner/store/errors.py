"""Errors of the artifact store; each message says what to fix."""

from __future__ import annotations

from searchtuner.errors import ConfigError, SearchTunerError


class StoreError(SearchTunerError):
    """Base class of every error the artifact store raises."""


class NotFound(StoreError, LookupError):
    """No complete object under the key (never written, deleted, or its write never finished)."""


class IntegrityError(StoreError):
    """The bytes read do not match the object's recorded sha256 digest or size."""


class InvalidKeyError(ConfigError):
    """A key, prefix or owner name that the store does not accept."""


class StoreAccessDenied(StoreError):
    """The credentials are missing, wrong, or not allowed to do what was asked."""


class StoreUnavailable(StoreError):
    """The storage service cannot be reached or keeps failing (throttling, 5xx) after retries.

    The S3 store retries such failures for up to its outage budget (``outage_seconds``)
    before raising this; the message says how long it waited and how to wait longer.
    """


class BucketNotFound(StoreError):
    """The S3 bucket named in the store URI does not exist at the endpoint."""
