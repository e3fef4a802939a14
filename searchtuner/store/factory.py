"""Open a store from a URI: a local directory or an S3 bucket and prefix."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlsplit

from searchtuner.errors import ConfigError, invalid_choice
from searchtuner.store.base import Store
from searchtuner.store.local import LocalStore

ENDPOINT_VARIABLES = ("SEARCHTUNER_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""Environment variables naming the S3 endpoint, the first set one wins."""
SCHEMES = ("file", "s3")
S3_OPTIONS = ("outage_seconds",)
"""Query parameters an ``s3://`` URI may carry (each overrides its environment variable)."""


def open_store(uri: str | os.PathLike[str]) -> Store:
    """The store a URI names.

    * ``file:///abs/dir`` or a plain path (``./artifacts``, ``/srv/store``): a
      :class:`LocalStore` in that directory. ``file://./dir`` (and ``file://../dir``) name a
      directory relative to the working directory, resolved when the store is opened.
    * ``s3://bucket`` or ``s3://bucket/prefix``: an :class:`S3Store`; the endpoint comes from
      ``SEARCHTUNER_S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
      else AWS; region and credentials from the standard AWS chain. The outage budget
      (how long requests retry while S3 is unreachable, see :class:`S3Store`) comes from
      ``?outage_seconds=N`` on the URI, else ``SEARCHTUNER_STORE_OUTAGE_SECONDS``, else 30.

    Raises:
        ConfigError: an unknown scheme (the message lists ``file`` and ``s3``), a ``file`` URI
            naming another host, a bad bucket name or prefix, or an unknown or bad query
            parameter.
    """
    text = os.fspath(uri)
    if not isinstance(text, str) or not text:
        raise ConfigError(f"store URI must be a non-empty string, got {uri!r}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "":
        return LocalStore(text)
    if scheme == "file":
        if parts.netloc in (".", ".."):  # file://./dir: relative, as config files often say
            return LocalStore(parts.netloc + unquote(parts.path))
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(
                f"file URI {text!r} names host {parts.netloc!r}; use file:///absolute/path"
            )
        return LocalStore(unquote(parts.path))
    if scheme == "s3":
        if parts.fragment:
            raise ConfigError(f"S3 URI {text!r} has a fragment; use s3://bucket/prefix")
        options = _s3_options(text, parts.query)
        from searchtuner.store.s3 import S3Store, parse_outage_seconds  # boto3 only when used

        endpoint = next(
            (os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), None
        )
        outage = options.get("outage_seconds")
        budget = None  # None: S3Store reads SEARCHTUNER_STORE_OUTAGE_SECONDS
        if outage is not None:
            budget = parse_outage_seconds(outage, f"outage_seconds in the store URI {text!r}")
        return S3Store(
            parts.netloc, unquote(parts.path), endpoint_url=endpoint, outage_seconds=budget
        )
    raise invalid_choice("store URI scheme", parts.scheme, SCHEMES)


def _s3_options(uri: str, query: str) -> dict[str, str]:
    """The options in an ``s3://`` URI's query, each named in :data:`S3_OPTIONS` once."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in S3_OPTIONS or name in options:
            what = "repeats" if name in options else "has an unknown"
            raise ConfigError(
                f"S3 URI {uri!r} {what} query parameter {name!r}; the only one is "
                f"{', '.join(S3_OPTIONS)} (s3://bucket/prefix?outage_seconds=60)"
            )
        options[name] = value
    return options
