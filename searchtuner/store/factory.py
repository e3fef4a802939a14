"""Open a store from a URI: a local directory or an S3 bucket and prefix."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from searchtuner.errors import ConfigError, invalid_choice
from searchtuner.store.base import Store
from searchtuner.store.local import LocalStore

ENDPOINT_VARIABLES = ("SEARCHTUNER_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
"""Environment variables naming the S3 endpoint, the first set one wins."""
SCHEMES = ("file", "s3")


def open_store(uri: str | os.PathLike[str]) -> Store:
    """The store a URI names.

    * ``file:///abs/dir`` or a plain path (``./artifacts``, ``/srv/store``): a
      :class:`LocalStore` in that directory. ``file://./dir`` (and ``file://../dir``) name a
      directory relative to the working directory, resolved when the store is opened.
    * ``s3://bucket`` or ``s3://bucket/prefix``: an :class:`S3Store`; the endpoint comes from
      ``SEARCHTUNER_S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``,
      else AWS; region and credentials from the standard AWS chain.

    Raises:
        ConfigError: an unknown scheme (the message lists ``file`` and ``s3``), a ``file`` URI
            naming another host, or a bad bucket name or prefix.
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
        if parts.query or parts.fragment:
            raise ConfigError(f"S3 URI {text!r} has a query or fragment; use s3://bucket/prefix")
        from searchtuner.store.s3 import S3Store  # boto3 is imported only when S3 is used

        endpoint = next(
            (os.environ[name] for name in ENDPOINT_VARIABLES if os.environ.get(name)), None
        )
        return S3Store(parts.netloc, unquote(parts.path), endpoint_url=endpoint)
    raise invalid_choice("store URI scheme", parts.scheme, SCHEMES)
