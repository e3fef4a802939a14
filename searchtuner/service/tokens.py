"""Access tokens: who a request acts for.

A token is ``st_<id>_<secret>``. The store keeps, under ``auth/tokens/<id>.json``, the token's
owner and the SHA-256 of the whole token — never the token itself — so a copy of the store
does not let anyone in. :meth:`TokenStore.resolve` finds the record by the id and compares
digests with :func:`hmac.compare_digest` (constant time). Revoking deletes the record.

Every part of the service resolves tokens against the same store (the gateway to refuse a
request early, each executor to pick the owner's namespace), so an executor reached directly,
past the gateway, still needs a valid token. Answers are cached for ``cache_seconds``
(``SEARCHTUNER_TOKEN_CACHE_SECONDS``, default 5): a revoked token stops working within that.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from searchtuner.errors import SearchTunerError
from searchtuner.store import NotFound, Store, validate_segment

TOKENS_PREFIX = "auth/tokens/"
TOKEN_PATTERN = re.compile(r"^st_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
CACHE_SECONDS_ENV = "SEARCHTUNER_TOKEN_CACHE_SECONDS"
HOW_TO_SEND = (
    "send it as `Authorization: Bearer <token>` over HTTP or as gRPC metadata "
    "('authorization', 'Bearer <token>'); an operator creates one with "
    "`searchtuner token create --owner NAME`"
)


class Unauthenticated(SearchTunerError):
    """A request without a valid token (HTTP 401, gRPC ``UNAUTHENTICATED``)."""


@dataclass(frozen=True)
class TokenInfo:
    """What the store keeps of a token (never the token)."""

    token_id: str
    owner: str
    name: str
    created_at: str


@dataclass(frozen=True)
class IssuedToken:
    """A new token: shown once, at creation; only its digest is stored."""

    token: str
    info: TokenInfo


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id_of(token: str) -> str | None:
    """The id part of a well-formed token, else None."""
    match = TOKEN_PATTERN.match(token)
    return match[1] if match else None


class TokenStore:
    """Create, list, revoke and resolve tokens kept in an artifact store."""

    def __init__(self, store: Store, cache_seconds: float | None = None) -> None:
        self.store = store
        if cache_seconds is None:
            cache_seconds = float(os.environ.get(CACHE_SECONDS_ENV, "5") or 5)
        self.cache_seconds = max(cache_seconds, 0.0)
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def create(self, owner: str, name: str = "") -> IssuedToken:
        """A new token for ``owner`` (a valid owner name: letters, digits, ``-_.``).

        Raises:
            InvalidKeyError: ``owner`` cannot name a namespace.
        """
        validate_segment(owner, what="owner")
        token_id = secrets.token_hex(8)
        token = f"st_{token_id}_{secrets.token_urlsafe(32)}"
        created = datetime.now(UTC).isoformat(timespec="seconds")
        self.store.put_json(
            f"{TOKENS_PREFIX}{token_id}.json",
            {"token_id": token_id, "owner": owner, "name": name, "created_at": created,
             "sha256": _digest(token)},
        )  # fmt: skip
        return IssuedToken(token, TokenInfo(token_id, owner, name, created))

    def revoke(self, token_id: str) -> TokenInfo:
        """Delete a token by its id (the ``st_<id>_`` part, or the whole token).

        Raises:
            NotFound: no such token.
        """
        token_id = token_id_of(token_id) or token_id
        info = self.get(token_id)
        self.store.delete(f"{TOKENS_PREFIX}{token_id}.json")
        with self._lock:
            self._cache.clear()
        return info

    def get(self, token_id: str) -> TokenInfo:
        """A token's record by id.

        Raises:
            NotFound: no such token.
        """
        if not re.fullmatch(r"[0-9a-f]{16}", token_id):
            raise NotFound(f"no token {token_id!r}: a token id is 16 hex digits (see `token list`)")
        try:
            record = self.store.get_json(f"{TOKENS_PREFIX}{token_id}.json")
        except NotFound as err:
            raise NotFound(f"no token {token_id!r} (see `searchtuner token list`)") from err
        return TokenInfo(record["token_id"], record["owner"], record["name"], record["created_at"])

    def list(self, owner: str | None = None) -> Iterator[TokenInfo]:
        """Every token (of ``owner``, when given), oldest first."""
        found = []
        for key in self.store.keys(TOKENS_PREFIX):
            try:
                info = self.get(key[len(TOKENS_PREFIX) :].removesuffix(".json"))
            except NotFound:
                continue  # revoked while listing
            if owner is None or info.owner == owner:
                found.append(info)
        yield from sorted(found, key=lambda info: (info.created_at, info.token_id))

    def resolve(self, token: object) -> str:
        """The owner a token acts for.

        Raises:
            Unauthenticated: no token, a malformed one, or one that is unknown or revoked
                (one message for the last two, so a caller learns nothing about other tokens).
        """
        if not isinstance(token, str) or not token:
            raise Unauthenticated(f"this request needs a token: {HOW_TO_SEND}")
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(token)
        if cached is not None and now - cached[0] < self.cache_seconds:
            owner = cached[1]
        else:
            owner = self._lookup(token)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token] = (now, owner)
        if owner is None:
            raise Unauthenticated(
                "the token is not valid (mistyped, revoked or from another service): "
                "ask for a new one; an operator creates one with "
                "`searchtuner token create --owner NAME`"
            )
        return owner

    def _lookup(self, token: str) -> str | None:
        token_id = token_id_of(token)
        if token_id is None:
            return None
        try:
            record = self.store.get_json(f"{TOKENS_PREFIX}{token_id}.json")
        except NotFound:
            return None
        if not hmac.compare_digest(str(record.get("sha256", "")), _digest(token)):
            return None
        return str(record["owner"])
