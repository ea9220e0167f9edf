"""Storage errors: one exception family, and the translation of boto3/botocore failures into it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from drtl.errors import ConfigError, DRTLError
from drtl.storage.config import S3Config, parse_s3_uri

_AUTH_CODES = {
    "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "403", "Forbidden",
    "InvalidToken", "ExpiredToken", "AllAccessDisabled", "InvalidSecurity", "AuthorizationHeaderMalformed",
}


class StorageError(DRTLError):
    """An S3 operation failed (base of the storage errors)."""


class S3AuthError(StorageError):
    """Credentials missing, unknown or rejected (AccessDenied, SignatureDoesNotMatch, ...)."""


class S3NotFoundError(StorageError):
    """The bucket, object or prefix does not exist."""


class S3ConnectionError(StorageError):
    """The endpoint cannot be reached (connection refused, DNS, timeout)."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def client_error_code(exc) -> tuple[str, int | None, str]:
    resp = getattr(exc, "response", None) or {}
    err = resp.get("Error", {}) or {}
    status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(err.get("Code", "") or status or ""), status, str(err.get("Message", "") or "")


def translate_error(exc: BaseException, uri: str, cfg: S3Config) -> DRTLError | None:
    """The :class:`StorageError` for a boto3/botocore exception (None if it is none of theirs)."""
    from botocore import exceptions as bx

    where = cfg.endpoint_name
    if isinstance(exc, bx.ClientError):
        code, status, message = client_error_code(exc)
        if code == "InvalidAccessKeyId":
            return S3AuthError(f"{uri}: access key {cfg.access_key!r} is unknown to {where}; "
                               "check AWS_ACCESS_KEY_ID")
        if code == "SignatureDoesNotMatch":
            return S3AuthError(f"{uri}: signature rejected by {where} (wrong secret key?); "
                               "check AWS_SECRET_ACCESS_KEY")
        if code in _AUTH_CODES or status == 403:
            return S3AuthError(f"{uri}: access denied by {where}; "
                               "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket's permissions")
        if code == "NoSuchBucket":
            return S3NotFoundError(f"{uri}: bucket {parse_s3_uri(uri)[0]!r} not found at {where}; "
                                   "check the URI (or create the bucket and `dvc push` the data)")
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            return S3NotFoundError(f"{uri}: no such object at {where}; check the URI (and the bucket)")
        if code == "InvalidBucketName":
            return ConfigError(f"{uri}: invalid bucket name for {where}; use 3-63 lowercase letters, digits or '-'")
        return StorageError(_one_line(f"{uri}: S3 error {code or status} from {where}: {message or exc}"))
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return S3AuthError(f"{uri}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectTimeoutError | bx.ReadTimeoutError
                   | bx.ConnectionClosedError | bx.ProxyConnectionError):
        return S3ConnectionError(_one_line(
            f"{uri}: cannot reach {where} ({type(exc).__name__}); is the S3 server running? "
            "check DRTL_S3_ENDPOINT/AWS_ENDPOINT_URL"))
    if isinstance(exc, bx.ParamValidationError):
        return ConfigError(_one_line(f"{uri}: {exc}"))
    if isinstance(exc, bx.BotoCoreError):
        return StorageError(_one_line(f"{uri}: S3 request to {where} failed: {exc}"))
    return None


@contextmanager
def s3_errors(uri: str, cfg: S3Config) -> Iterator[None]:
    """Re-raise a boto3/botocore failure inside the block as its :class:`StorageError`."""
    try:
        yield
    except DRTLError:
        raise
    except Exception as exc:
        err = translate_error(exc, uri, cfg)
        if err is None:
            raise
        raise err from exc
