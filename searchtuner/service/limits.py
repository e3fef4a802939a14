"""What one owner may send and start: the service's limits, read from the environment.

Each limit has an environment variable, so an operator sets it once for every part of the
Flow (the gateway checks request sizes, the ingest executor document and dataset sizes, the
converter live runs per owner). Going over a limit fails the request with :class:`TooLarge`
(HTTP 413, gRPC ``RESOURCE_EXHAUSTED``) or :class:`TooManyRuns` (HTTP 429), whose message names
the limit, its variable and what to do instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from searchtuner.errors import ConfigError, SearchTunerError

MiB = 1 << 20


class TooLarge(SearchTunerError):
    """A document, request or dataset over the service's size limit (HTTP 413)."""


class TooManyRuns(SearchTunerError):
    """The owner already has as many live runs as the service allows (HTTP 429)."""


@dataclass(frozen=True)
class Limits:
    """The service's limits; :meth:`from_env` reads them (``SEARCHTUNER_<FIELD upper>``)."""

    max_document_bytes: int = 1 * MiB
    """One document's text (UTF-8 bytes) or tensor/image payload."""
    max_request_bytes: int = 64 * MiB
    """One gRPC message or HTTP body to the gateway (dataset uploads over HTTP excepted: they
    stream, and ``max_dataset_bytes`` bounds them)."""
    max_dataset_bytes: int = 4096 * MiB
    """One dataset: the bytes of an upload (HTTP) or of its documents (gRPC), in all."""
    max_dataset_rows: int = 5_000_000
    """One dataset's documents (rows)."""
    max_runs_per_owner: int = 8
    """Live runs (CREATED, QUEUED, TRAINING, ...) one owner may have at once."""

    @classmethod
    def from_env(cls) -> Limits:
        """The limits the environment sets; the defaults for the rest.

        Raises:
            ConfigError: a variable is set to something other than a positive integer.
        """
        values = {}
        for field in fields(cls):
            name = env_name(field.name)
            raw = os.environ.get(name)
            if raw is None or raw == "":
                continue
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise ConfigError(f"{name}={raw!r} must be a positive whole number")
            values[field.name] = value
        return cls(**values)


def env_name(field: str) -> str:
    """The environment variable of a limit, e.g. ``SEARCHTUNER_MAX_DOCUMENT_BYTES``."""
    return f"SEARCHTUNER_{field.upper()}"


def human_bytes(size: int) -> str:
    """``1048576`` → ``"1 MiB"`` (whole units when exact, else one decimal)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if size % scale == 0 else f"{value:.1f} {unit}"
    return f"{size} bytes"
