"""Service URLs: ``grpc://host:port``, ``http://host:port`` or ``https://host[:port]/prefix``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from searchtuner.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:54322"
"""Where ``searchtuner serve`` answers HTTP by default."""
DEFAULT_GRPC_PORT = 54321
SCHEMES = ("grpc", "grpcs", "http", "https")


@dataclass(frozen=True)
class ServiceURL:
    """A parsed service URL.

    Attributes:
        scheme: ``grpc``, ``grpcs`` (gRPC over TLS), ``http`` or ``https``.
        host: the host name or address (IPv6 without brackets).
        port: the port; gRPC defaults to 54321, HTTP(S) to 80/443.
        path: a path prefix for HTTP behind a proxy (no trailing slash), else ``""``.
    """

    scheme: str
    host: str
    port: int
    path: str = ""

    @property
    def is_grpc(self) -> bool:
        return self.scheme in ("grpc", "grpcs")

    @property
    def tls(self) -> bool:
        return self.scheme in ("grpcs", "https")

    @property
    def base(self) -> str:
        """The URL requests are made under, e.g. ``http://127.0.0.1:54322``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    def __str__(self) -> str:
        return self.base


def parse_url(url: str) -> ServiceURL:
    """Parse a service URL.

    Args:
        url: ``grpc://host:port``, ``grpcs://host:port``, ``http://host:port`` or
            ``https://host[:port][/prefix]``.

    Returns:
        The parsed URL.

    Raises:
        ConfigError: no or another scheme, no host, a bad port, or a path on a gRPC URL.
    """
    text = url.strip()
    if "://" not in text:
        raise ConfigError(
            f"service URL {url!r} has no scheme; write it as http://{text or 'host:port'} "
            f"or grpc://{text or 'host:port'}"
        )
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"service URL {url!r} has the scheme {parts.scheme!r}; use one of "
            f"{', '.join(s + '://' for s in SCHEMES)}"
        )
    try:
        port = parts.port
    except ValueError as err:
        raise ConfigError(f"service URL {url!r} has a bad port ({err}); give 1-65535") from err
    if not parts.hostname:
        raise ConfigError(f"service URL {url!r} names no host; e.g. {scheme}://127.0.0.1:54322")
    if port == 0:
        raise ConfigError(f"service URL {url!r} has port 0; give the service's port")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"service URL {url!r} has a query, fragment or user name; give only "
            "scheme://host:port (pass a token with token= or --token)"
        )
    path = parts.path.rstrip("/")
    if scheme.startswith("grpc"):
        if path:
            raise ConfigError(f"a gRPC URL has no path; give {scheme}://host:port, not {url!r}")
        return ServiceURL(scheme, parts.hostname, port or DEFAULT_GRPC_PORT)
    return ServiceURL(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)
