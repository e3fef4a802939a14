"""Fixtures the integration tests share: one moto S3 server on 127.0.0.1 for the session,
and a new empty bucket for each test that asks for one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.s3_server import fresh_bucket, running_moto_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, started once for the session on 127.0.0.1."""
    with running_moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[str]:
    """A new empty bucket for each test."""
    with fresh_bucket(s3_endpoint) as name:
        yield name
