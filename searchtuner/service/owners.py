"""Which owner a request acts for (one place, shared by the executors and the gateway)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from searchtuner.store import InvalidKeyError, validate_segment

LOCAL_OWNER = "local"


def owner_of(parameters: Mapping[str, Any] | None) -> str:
    """The owner a request acts for.

    Without tokens (the embedded single-user default), every request acts for the one local
    owner: ``SEARCHTUNER_OWNER``, default ``local``. The owner never comes from what a client
    sends in the request, so a client cannot pick another owner's namespace.

    Raises:
        RuntimeError: ``SEARCHTUNER_OWNER`` is not a valid owner name (a misconfigured
            service, not a bad request).
    """
    del parameters  # tokens, when configured, are resolved here (see docs/service.md)
    owner = os.environ.get("SEARCHTUNER_OWNER", LOCAL_OWNER)
    try:
        validate_segment(owner, what="owner")
    except InvalidKeyError as err:
        raise RuntimeError(f"SEARCHTUNER_OWNER={owner!r} is not a valid owner name: {err}") from err
    return owner


def store_uri_or_default(store_uri: str | None = None) -> str:
    """The store the service's parts share: the argument, else ``SEARCHTUNER_STORE``, else
    ``./searchtuner-data``."""
    return store_uri or os.environ.get("SEARCHTUNER_STORE") or "file://./searchtuner-data"
