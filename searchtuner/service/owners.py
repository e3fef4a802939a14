"""Which owner a request acts for (one place, shared by the executors and the gateway)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from searchtuner.service.tokens import TokenStore, Unauthenticated
from searchtuner.store import open_store

LOCAL_OWNER = "local"
TOKEN_PARAMETER = "token"

__all__ = ["LOCAL_OWNER", "Unauthenticated", "owner_of", "store_uri_or_default", "token_store"]


def owner_of(parameters: Mapping[str, Any] | None) -> str:
    """The owner a request acts for: the owner of the token in ``parameters["token"]``.

    The gateway puts the token there from the request's ``Authorization: Bearer`` header (HTTP)
    or ``authorization`` metadata (gRPC), replacing whatever the client wrote into the
    parameters; every executor resolves it again against the store's token records, so nothing
    a client sends picks another owner's namespace.

    Raises:
        Unauthenticated: no token, or one that is unknown or revoked.
    """
    token = (parameters or {}).get(TOKEN_PARAMETER)
    return token_store().resolve(token)


def token_store(store_uri: str | None = None) -> TokenStore:
    """The token records of the service's store (one cached instance per store URI)."""
    return _token_store(store_uri_or_default(store_uri))


@functools.lru_cache(maxsize=8)
def _token_store(uri: str) -> TokenStore:
    return TokenStore(open_store(uri))


def store_uri_or_default(store_uri: str | None = None) -> str:
    """The store the service's parts share: the argument, else ``SEARCHTUNER_STORE``, else
    ``./searchtuner-data``."""
    return store_uri or os.environ.get("SEARCHTUNER_STORE") or "file://./searchtuner-data"
