"""Service URLs: the schemes the SDK speaks, defaults, and clear errors for the rest."""

from __future__ import annotations

import pytest

from searchtuner.client import ServiceURL, parse_url
from searchtuner.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("grpc://127.0.0.1:54321", ServiceURL("grpc", "127.0.0.1", 54321)),
        ("grpc://tuner.internal", ServiceURL("grpc", "tuner.internal", 54321)),
        ("grpcs://tuner.example.com:443", ServiceURL("grpcs", "tuner.example.com", 443)),
        ("http://localhost:54322/", ServiceURL("http", "localhost", 54322)),
        ("HTTP://localhost:8080", ServiceURL("http", "localhost", 8080)),
        ("https://example.com", ServiceURL("https", "example.com", 443)),
        ("https://example.com/tuner/", ServiceURL("https", "example.com", 443, "/tuner")),
        ("http://[::1]:9000", ServiceURL("http", "::1", 9000)),
    ],
)
def test_parses_each_scheme(url: str, expected: ServiceURL) -> None:
    assert parse_url(url) == expected


def test_base_is_what_requests_go_to() -> None:
    assert parse_url("https://example.com/tuner/").base == "https://example.com:443/tuner"
    assert parse_url("http://[::1]:9000").base == "http://[::1]:9000"
    assert parse_url("grpc://h:1").is_grpc and not parse_url("http://h:1").is_grpc
    assert parse_url("grpcs://h:1").tls and parse_url("https://h").tls
    assert not parse_url("grpc://h:1").tls


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("localhost:54322", "no scheme; write it as http://localhost:54322"),
        ("ftp://host:21", "use one of grpc://, grpcs://, http://, https://"),
        ("ws://host:80", "scheme 'ws'"),
        ("http://:8080", "names no host"),
        ("http://host:99999", "bad port"),
        ("http://host:0", "port 0"),
        ("grpc://host:54321/api", "a gRPC URL has no path"),
        ("http://user:secret@host:1", "pass a token"),
        ("http://host:1/?debug=1", "query"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_url(url)
    assert words in str(caught.value)
