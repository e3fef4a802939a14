"""Turn boto3/botocore failures into store errors that say what to fix.

Errors are classified by botocore's error *code* (``err.response["Error"]["Code"]``), the HTTP
status and the exception class - never by the text of a message. :func:`is_transient` decides
which failures the S3 store retries (see :class:`~searchtuner.store.s3.S3Store`).
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
from urllib3.exceptions import ProtocolError as URLLib3ProtocolError
from urllib3.exceptions import TimeoutError as URLLib3TimeoutError

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
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (
    BotoConnectionError,  # EndpointConnectionError (refused), Connect/ReadTimeoutError, ...
    HTTPClientError,  # ConnectionClosedError (reset mid-request), ResponseStreamingError
    IncompleteReadError,  # a body cut short
    # botocore wraps what urllib3 and sockets raise; these catch what might slip through
    # (e.g. from a streaming body), so that a dropped connection is never taken for data.
    URLLib3ProtocolError,
    URLLib3TimeoutError,
    ConnectionError,
    TimeoutError,
)
"""Client-side failures that mean "the server could not be reached or the connection broke"."""
_CREDENTIAL_HELP = (
    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, or the profile "
    "named by AWS_PROFILE in ~/.aws/credentials"
)


def error_code(err: ClientError) -> str:
    """The S3 error code of an error answer (``""`` when it has none)."""
    return str(err.response.get("Error", {}).get("Code", ""))


def is_transient(err: BaseException) -> bool:
    """Whether trying the same request again later may succeed.

    True for connection failures (refused, reset, timed out, a body cut short) and for
    answers that say "not now": throttling codes and any 5xx status. Never for an answer
    about the request itself (missing object, denied, bad credentials).
    """
    if isinstance(err, ClientError):
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return error_code(err) in THROTTLING_CODES or status >= 500
    return isinstance(err, TRANSPORT_ERRORS)


def store_error(
    err: Exception,
    *,
    action: str,
    bucket: str,
    key: str | None,
    endpoint: str,
    attempts: int | None = None,
) -> SearchTunerError:
    """The store error for any failure of an S3 request (see :func:`s3_error`).

    Args:
        err: what boto3 raised (a ClientError, a BotoCoreError, or a transport error that
            was not wrapped).
        action: what was being done, e.g. ``"reading"``.
        bucket: the bucket asked for.
        key: the full S3 key asked for, or ``None``.
        endpoint: the endpoint URL in use.
        attempts: how many times the request was sent; ``None`` takes botocore's count.
    """
    if isinstance(err, ClientError):
        return s3_error(
            err, action=action, bucket=bucket, key=key, endpoint=endpoint, attempts=attempts
        )
    if isinstance(err, BotoCoreError):
        return botocore_error(err, action=action, bucket=bucket, key=key, endpoint=endpoint)
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(err, TRANSPORT_ERRORS):
        return StoreUnavailable(
            f"cannot reach S3 at {endpoint} while {action} {where} ({type(err).__name__}: "
            f"{err}); check that the server is running, and the network"
        )
    return StoreError(f"S3 client failed while {action} {where}: {type(err).__name__}: {err}")


def outage_error(
    cause: SearchTunerError, *, endpoint: str, waited: float, attempts: int, budget: float
) -> StoreUnavailable:
    """The error for a request that kept failing for longer than the store's outage budget.

    Args:
        cause: the store error of the last attempt (it names the request and the endpoint).
        endpoint: the endpoint URL in use.
        waited: seconds from the request's first failure to giving up.
        attempts: how many times the request was sent.
        budget: the outage budget in seconds (``outage_seconds``).
    """
    return StoreUnavailable(
        f"S3 at {endpoint} was still unavailable after {waited:.1f} s of retries "
        f"({attempts} attempt(s)), the store's outage budget of {budget:g} s: {cause}. To wait "
        "out longer outages, raise outage_seconds (SEARCHTUNER_STORE_OUTAGE_SECONDS, or "
        "?outage_seconds=N on the store URI)"
    )


def s3_error(
    err: ClientError,
    *,
    action: str,
    bucket: str,
    key: str | None,
    endpoint: str,
    attempts: int | None = None,
) -> SearchTunerError:
    """The store error for an error answer from S3.

    Args:
        err: the botocore error, whose code and HTTP status decide the class.
        action: what was being done, e.g. ``"reading"``; goes into the message.
        bucket: the bucket asked for.
        key: the full S3 key asked for, or ``None`` for bucket-level requests.
        endpoint: the endpoint URL in use.
        attempts: how many times the request was sent; ``None`` takes botocore's count.

    Returns:
        BucketNotFound, NotFound, StoreAccessDenied, StoreUnavailable, ConfigError (wrong
        region), or StoreError for any other code; the caller raises it ``from err``.
    """
    error = err.response.get("Error", {})
    meta = err.response.get("ResponseMetadata", {})
    if attempts is None:
        attempts = int(meta.get("RetryAttempts", 0) or 0) + 1
    return classify(
        str(error.get("Code", "")),
        status=int(meta.get("HTTPStatusCode", 0) or 0),
        message=str(error.get("Message", "")),
        attempts=attempts,
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
            "attempt(s) with backoff; try again later, or raise max_attempts or outage_seconds "
            "if the service throttles this workload"
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
