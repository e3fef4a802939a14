"""The S3 error mapping, on botocore's own exception objects (no server needed).

The integration tests provoke most of these from a real server; this covers the codes a local
server cannot produce (expired tokens, wrong region, timeouts).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from searchtuner.errors import ConfigError
from searchtuner.store import (
    BucketNotFound,
    IntegrityError,
    NotFound,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
)
from searchtuner.store.s3_errors import botocore_error, s3_error

ENDPOINT = "http://127.0.0.1:9000"


def client_error(code: str, status: int, retries: int = 0) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"message for {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
        },
        "GetObject",
    )


def mapped(err: ClientError | BotoCoreError) -> Exception:
    where: dict[str, str] = {
        "action": "reading",
        "bucket": "models",
        "key": "k/v",
        "endpoint": ENDPOINT,
    }
    if isinstance(err, ClientError):
        return s3_error(err, **where)
    return botocore_error(err, **where)


@pytest.mark.parametrize(
    ("code", "status", "kind", "said"),
    [
        ("NoSuchBucket", 404, BucketNotFound, "aws s3 mb s3://models"),
        ("NoSuchKey", 404, NotFound, "s3://models/k/v"),
        ("404", 404, NotFound, "check the key"),
        ("InvalidAccessKeyId", 403, StoreAccessDenied, "bad credentials"),
        ("SignatureDoesNotMatch", 403, StoreAccessDenied, "AWS_SECRET_ACCESS_KEY"),
        ("ExpiredToken", 400, StoreAccessDenied, "AWS_SESSION_TOKEN"),
        ("AccessDenied", 403, StoreAccessDenied, "s3:GetObject"),
        ("403", 403, StoreAccessDenied, "wrong or lack permission"),
        ("SlowDown", 503, StoreUnavailable, "after 5 attempt(s)"),
        ("InternalError", 500, StoreUnavailable, "try again later"),
        ("BadGateway", 502, StoreUnavailable, "max_attempts"),
        ("AuthorizationHeaderMalformed", 400, ConfigError, "AWS_REGION"),
        ("InvalidObjectState", 403, StoreError, "S3 refused reading s3://models/k/v"),
    ],
)
def test_client_errors_by_code(code: str, status: int, kind: type, said: str) -> None:
    error = mapped(client_error(code, status, retries=4))
    assert type(error) is kind
    assert said in str(error)
    assert code in str(error)


@pytest.mark.parametrize(
    ("err", "kind", "said"),
    [
        (EndpointConnectionError(endpoint_url=ENDPOINT), StoreUnavailable, "cannot reach S3"),
        (ConnectTimeoutError(endpoint_url=ENDPOINT), StoreUnavailable, "AWS_ENDPOINT_URL"),
        (ReadTimeoutError(endpoint_url=ENDPOINT), StoreUnavailable, "server is running"),
        (NoCredentialsError(), StoreAccessDenied, "AWS_ACCESS_KEY_ID"),
        (ProfileNotFound(profile="ghost"), ConfigError, "AWS_PROFILE"),
        (FlexibleChecksumError(error_msg="crc"), IntegrityError, "transfer checksum"),
    ],
)
def test_client_side_errors(err: BotoCoreError, kind: type, said: str) -> None:
    error = mapped(err)
    assert isinstance(error, kind)
    assert said in str(error)
