"""Turn boto3/botocore failures into store errors that say what to fix.

Errors are classified by botocore's error *code* (``err.response["Error"]["Code"]``), the HTTP
status and the exception class - never by the text of a message.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    CredentialRetrievalError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from searchtuner.errors import ConfigError, SearchTunerError
from searchtuner.store.errors import (
    BucketNotFound,
    IntegrityError,
    NotFound,
    StoreAccessDenied,
    StoreError,
    StoreUnavailable,
)

CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
    }
)
DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem"})
MISSING_KEY_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
REGION_CODES = frozenset(
    {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
)
THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "ServiceUnavailable",
        "RequestTimeout",
        "InternalError",
    }
)
_CREDENTIAL_HELP = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, or the profile "
    "named by AWS_PROFILE in ~/.aws/credentials"
)


def s3_error(
    err: ClientError, *, action: str, bucket: str, key: str | None, endpoint: str
) -> SearchTunerError:
    """The store error for an error answer from S3.

    Args:
        err: the botocore error, whose code and HTTP status decide the class.
        action: what was being done, e.g. ``"reading"``; goes into the message.
        bucket: the bucket asked for.
        key: the full S3 key asked for, or ``None`` for bucket-level requests.
        endpoint: the endpoint URL in use.

    Returns:
        BucketNotFound, NotFound, StoreAccessDenied, StoreUnavailable, ConfigError (wrong
        region), or StoreError for any other code; the caller raises it ``from err``.
    """
    error = err.response.get("Error", {})
    meta = err.response.get("ResponseMetadata", {})
    return classify(
        str(error.get("Code", "")),
        status=int(meta.get("HTTPStatusCode", 0) or 0),
        message=str(error.get("Message", "")),
        attempts=int(meta.get("RetryAttempts", 0) or 0) + 1,
        action=action,
        bucket=bucket,
        key=key,
        endpoint=endpoint,
    )


def classify(
    code: str,
    *,
    status: int,
    message: str,
    attempts: int,
    action: str,
    bucket: str,
    key: str | None,
    endpoint: str,
) -> SearchTunerError:
    """The store error for an S3 error code and HTTP status (see :func:`s3_error`)."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    detail = (
        f"(S3 error {code or status}: {message})" if message else f"(S3 error {code or status})"
    )

    if code == "NoSuchBucket":
        return BucketNotFound(
            f"S3 bucket {bucket!r} does not exist at {endpoint} {detail}; create it "
            f"(aws s3 mb s3://{bucket} --endpoint-url {endpoint}) or fix the bucket name in "
            "the store URI"
        )
    if code in MISSING_KEY_CODES:
        return NotFound(f"no object at {where} {detail}; check the key with list()")
    if code in CREDENTIAL_CODES:
        return StoreAccessDenied(
            f"bad credentials {action} {where} {detail}: S3 at {endpoint} rejected the access "
            f"key or its signature; {_CREDENTIAL_HELP}"
        )
    if code in ("403", "Forbidden"):  # a HEAD answer: no body, so no detail
        return StoreAccessDenied(
            f"S3 at {endpoint} refused {action} {where} {detail}: the credentials are wrong or "
            f"lack permission ({_CREDENTIAL_HELP}; and check that they may read the bucket)"
        )
    if code in DENIED_CODES:
        return StoreAccessDenied(
            f"access denied {action} {where} {detail}; give the credentials in use permission "
            "for it (s3:GetObject, s3:PutObject, s3:ListBucket, s3:DeleteObject on the bucket "
            f"and prefix), or use other credentials ({_CREDENTIAL_HELP})"
        )
    if code in REGION_CODES:
        return ConfigError(
            f"S3 bucket {bucket!r} is in another region than the one configured {detail}; set "
            "the region (AWS_REGION or the store's region=) to the bucket's region"
        )
    if code in THROTTLING_CODES or status >= 500:
        return StoreUnavailable(
            f"S3 at {endpoint} kept failing while {action} {where} {detail} after {attempts} "
            "attempt(s) with backoff; try again later, or raise max_attempts if the service "
            "throttles this workload"
        )
    return StoreError(f"S3 refused {action} {where} {detail}")


def botocore_error(
    err: BotoCoreError, *, action: str, bucket: str, key: str | None, endpoint: str
) -> SearchTunerError:
    """The store error for a failure on the client side (network, credentials, config).

    Returns:
        StoreUnavailable for connection failures and timeouts, IntegrityError for a failed
        transfer checksum, StoreAccessDenied for missing credentials, ConfigError for an
        unknown profile, StoreError otherwise.
    """
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(err, BotoConnectionError | HTTPClientError | IncompleteReadError):
        return StoreUnavailable(
            f"cannot reach S3 at {endpoint} while {action} {where} ({type(err).__name__}: "
            f"{err}); check the endpoint URL (AWS_ENDPOINT_URL or SEARCHTUNER_S3_ENDPOINT_URL), "
            "that the server is running, and the network"
        )
    if isinstance(err, ChecksumError | FlexibleChecksumError):
        return IntegrityError(
            f"the bytes of {where} from {endpoint} failed their transfer checksum ({err}); try "
            "again, and if it persists the stored object is damaged - write it again"
        )
    if isinstance(err, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return StoreAccessDenied(
            f"no usable AWS credentials for {action} {where} ({err}); {_CREDENTIAL_HELP}"
        )
    if isinstance(err, ProfileNotFound):
        return ConfigError(f"{err}; set AWS_PROFILE to a profile in ~/.aws/config, or unset it")
    return StoreError(f"S3 client failed while {action} {where}: {type(err).__name__}: {err}")
