"""S3 object storage (boto3): datasets, models and reports to and from any S3-compatible endpoint.

Configuration comes from explicit arguments or the environment (see :meth:`S3Config.from_env`):

- credentials: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (optional ``AWS_SESSION_TOKEN``);
  when unset, boto3's own chain (profiles, instance roles) is used;
- endpoint: ``DRTL_S3_ENDPOINT``, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, else
  ``MLFLOW_S3_ENDPOINT_URL``; none means AWS S3 itself;
- region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default ``us-east-1``);
- default location: ``DRTL_S3_URI`` (``s3://bucket/prefix``), used by :meth:`S3Config.uri`.

Every failure raised on purpose is a :class:`StorageError` (a :class:`drtl.errors.DRTLError`) with
one actionable line naming the URI and the endpoint; a malformed URI is a
:class:`drtl.errors.ConfigError`. Downloads are atomic: a folder is fetched into a temporary
sibling and swapped in only when every object arrived, so a failed download leaves an existing
folder untouched. Progress bars show on a terminal only (:mod:`drtl.progress`).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path, PurePosixPath

from drtl.errors import ConfigError, DataError, DRTLError

__all__ = [
    "S3Config", "StorageError", "S3AuthError", "S3NotFoundError", "S3ConnectionError",
    "parse_s3_uri", "join_uri", "make_client", "upload_file", "download_file", "upload_folder",
    "download_folder", "exists", "list_keys", "ensure_bucket",
]

DEFAULT_REGION = "us-east-1"
ENDPOINT_VARS = ("DRTL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
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


# --------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class S3Config:
    """Where and how to talk to S3. ``endpoint_url=None`` means AWS S3.

    ``bucket``/``prefix`` are an optional default location (``DRTL_S3_URI``); the transfer functions
    always take full ``s3://`` URIs, which :meth:`uri` builds from it.
    """

    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = DEFAULT_REGION
    session_token: str | None = None
    bucket: str | None = None
    prefix: str = ""
    addressing_style: str = "path"  # what MinIO / SeaweedFS / Ceph want; "auto" or "virtual" for AWS
    max_attempts: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> S3Config:
        """Build from ``env`` (default ``os.environ``); keyword arguments that are not None win."""
        env = os.environ if env is None else env
        endpoint = next((env[v] for v in ENDPOINT_VARS if env.get(v)), None)
        bucket, prefix = (None, "")
        if env.get("DRTL_S3_URI"):
            bucket, prefix = parse_s3_uri(env["DRTL_S3_URI"])
        values = dict(
            endpoint_url=endpoint,
            access_key=env.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            bucket=bucket,
            prefix=prefix,
            addressing_style=env.get("DRTL_S3_ADDRESSING_STYLE") or "path",
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self):
        if self.endpoint_url is not None and not re.match(r"^https?://[^/\s]+", self.endpoint_url):
            raise ConfigError(f"S3 endpoint {self.endpoint_url!r} is not an http(s):// URL; "
                              "fix DRTL_S3_ENDPOINT / AWS_ENDPOINT_URL")
        if (self.access_key is None) != (self.secret_key is None):
            missing = "AWS_SECRET_ACCESS_KEY" if self.secret_key is None else "AWS_ACCESS_KEY_ID"
            raise ConfigError(f"S3 credentials are incomplete: set {missing} too (or neither)")
        if self.addressing_style not in ("path", "virtual", "auto"):
            raise ConfigError(f"S3 addressing style {self.addressing_style!r}: use path, virtual or auto")

    @property
    def endpoint_name(self) -> str:
        """The endpoint as messages show it."""
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/part/...`` under the default location (``DRTL_S3_URI``)."""
        if not self.bucket:
            raise ConfigError("no default S3 location: set DRTL_S3_URI=s3://bucket/prefix or pass a full s3:// URI")
        return join_uri(f"s3://{self.bucket}/{self.prefix}", *parts)

    def with_(self, **changes) -> S3Config:
        return replace(self, **changes)

    def __repr__(self) -> str:  # never print the secret
        return (f"S3Config(endpoint_url={self.endpoint_url!r}, access_key={self.access_key!r}, "
                f"secret_key={'***' if self.secret_key else None}, region={self.region!r}, "
                f"bucket={self.bucket!r}, prefix={self.prefix!r})")


def _cfg(cfg: S3Config | None) -> S3Config:
    return cfg if cfg is not None else S3Config.from_env()


def make_client(cfg: S3Config | None = None):
    """A boto3 S3 client for ``cfg`` (thread-safe, cached per config; retries and timeouts from ``cfg``)."""
    return _client(_cfg(cfg))


@lru_cache(maxsize=16)
def _client(cfg: S3Config):
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=cfg.access_key, aws_secret_access_key=cfg.secret_key,
        aws_session_token=cfg.session_token, region_name=cfg.region,
    )
    bconf = Config(
        s3={"addressing_style": cfg.addressing_style},
        retries={"max_attempts": cfg.max_attempts, "mode": "standard"},
        connect_timeout=cfg.connect_timeout, read_timeout=cfg.read_timeout,
        max_pool_connections=16,
    )
    return session.client("s3", endpoint_url=cfg.endpoint_url, config=bconf)


# ------------------------------------------------------------------------------------------------ URIs
def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``"s3://bucket/some/prefix/"`` -> ``("bucket", "some/prefix")``. Bad URI -> ConfigError."""
    if not isinstance(uri, str):
        raise ConfigError(f"{uri!r}: not an S3 URI; expected s3://bucket/prefix")
    m = re.match(r"^s3://([^/]*)/?(.*)$", uri.strip())
    if not m:
        raise ConfigError(f"{uri!r}: not an S3 URI; expected s3://bucket/prefix")
    bucket, prefix = m.group(1), m.group(2)
    if not bucket:
        raise ConfigError(f"{uri!r}: no bucket name; expected s3://bucket/prefix")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(f"{uri!r}: invalid bucket name {bucket!r}; use 3-63 lowercase letters, digits, '.' or '-'")
    parts = [p for p in prefix.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ConfigError(f"{uri!r}: '.' and '..' are not allowed in an S3 key")
    return bucket, "/".join(parts)


def join_uri(base: str, *parts: str) -> str:
    bucket, prefix = parse_s3_uri(base)
    key = "/".join(p.strip("/") for p in (prefix, *parts) if p and p.strip("/"))
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def _uri(bucket: str, key: str = "") -> str:
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


# ---------------------------------------------------------------------------------------------- errors
def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _client_error_code(exc) -> tuple[str, int | None, str]:
    resp = getattr(exc, "response", None) or {}
    err = resp.get("Error", {}) or {}
    status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(err.get("Code", "") or status or ""), status, str(err.get("Message", "") or "")


def translate_error(exc: BaseException, uri: str, cfg: S3Config) -> DRTLError | None:
    """The :class:`StorageError` for a boto3/botocore exception (None if it is none of theirs)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions as bx

    where = cfg.endpoint_name
    if isinstance(exc, S3UploadFailedError):
        if isinstance(exc.__context__, bx.ClientError | bx.BotoCoreError):
            exc = exc.__context__
        else:
            return StorageError(_one_line(f"{uri}: upload to {where} failed: {exc}"))
    if isinstance(exc, bx.ClientError):
        code, status, message = _client_error_code(exc)
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
                                   "create it (drtl.storage.ensure_bucket) or fix the URI")
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
def _s3_errors(uri: str, cfg: S3Config) -> Iterator[None]:
    try:
        yield
    except DRTLError:
        raise
    except Exception as exc:
        err = translate_error(exc, uri, cfg)
        if err is None:
            raise
        raise err from exc


# ------------------------------------------------------------------------------------------- transfers
def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    # multipart above 64 MiB; no threads inside a single file (folders parallelise across files)
    return TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, use_threads=False)


def _put(client, path: Path, bucket: str, key: str, cfg: S3Config) -> None:
    with _s3_errors(_uri(bucket, key), cfg):
        client.upload_file(str(path), bucket, key, Config=_transfer_config())


def _get(client, bucket: str, key: str, dest: Path, cfg: S3Config) -> None:
    with _s3_errors(_uri(bucket, key), cfg):
        client.download_file(bucket, key, str(dest), Config=_transfer_config())


def upload_file(local_path: str | os.PathLike, uri: str, cfg: S3Config | None = None) -> str:
    """Upload one file to ``uri`` (a URI ending in ``/`` gets the file's name appended). Returns the key."""
    cfg = _cfg(cfg)
    path = Path(local_path)
    if not path.is_file():
        raise DataError(f"{path}: file not found; nothing to upload")
    bucket, key = parse_s3_uri(uri)
    if uri.endswith("/") or not key:
        key = f"{key}/{path.name}" if key else path.name
    _put(make_client(cfg), path, bucket, key, cfg)
    return key


def download_file(uri: str, local_path: str | os.PathLike, cfg: S3Config | None = None) -> Path:
    """Download one object to ``local_path`` (into it, if it is a folder), atomically. Returns the path."""
    cfg = _cfg(cfg)
    bucket, key = parse_s3_uri(uri)
    if not key:
        raise ConfigError(f"{uri}: names a bucket, not an object; expected s3://bucket/key")
    dest = Path(local_path)
    if dest.is_dir():
        dest = dest / PurePosixPath(key).name
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        _get(make_client(cfg), bucket, key, tmp, cfg)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _local_files(root: Path) -> list[Path]:
    """Every file under root, sorted; names starting with '.' (temp files and folders) are skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return out


def _run_parallel(fn, items: list, workers: int, desc: str) -> None:
    from drtl.progress import progress

    bar = progress(total=len(items), desc=desc, unit="file")
    try:
        if workers <= 1 or len(items) <= 1:
            for it in items:
                fn(it)
                bar.update(1)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(fn, it) for it in items]
            try:
                for fut in futures:
                    fut.result()
                    bar.update(1)
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    finally:
        bar.close()


def upload_folder(local_dir: str | os.PathLike, uri: str, cfg: S3Config | None = None,
                  workers: int = 8) -> list[str]:
    """Upload every file under ``local_dir`` to ``uri/<relative path>``; return the keys (sorted).

    Files and folders whose names start with '.' (temporary files of atomic writes) are skipped;
    no ACLs are set. Objects already under ``uri`` that are not in ``local_dir`` are left alone.
    """
    cfg = _cfg(cfg)
    root = Path(local_dir)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found; nothing to upload")
    bucket, prefix = parse_s3_uri(uri)
    files = _local_files(root)
    if not files:
        raise DataError(f"{root}: empty folder; nothing to upload")
    jobs = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        jobs.append((f, f"{prefix}/{rel}" if prefix else rel))
    client = make_client(cfg)
    _run_parallel(lambda job: _put(client, job[0], bucket, job[1], cfg), jobs, workers, f"upload {uri}")
    return sorted(k for _, k in jobs)


def list_keys(uri: str, cfg: S3Config | None = None) -> list[str]:
    """Keys of the objects under ``uri`` treated as a folder (``prefix/...``), sorted."""
    cfg = _cfg(cfg)
    bucket, prefix = parse_s3_uri(uri)
    client = make_client(cfg)
    folder = f"{prefix}/" if prefix else ""
    keys: list[str] = []
    with _s3_errors(_uri(bucket, prefix), cfg):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
            keys.extend(o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return sorted(keys)


def download_folder(uri: str, local_dir: str | os.PathLike, cfg: S3Config | None = None,
                    workers: int = 8) -> Path:
    """Mirror the objects under ``uri`` into ``local_dir``, atomically; return ``local_dir``.

    Objects are fetched into a temporary sibling folder, which replaces ``local_dir`` only when all
    arrived; on any error ``local_dir`` (if it existed) is untouched and no partial folder remains.
    An existing ``local_dir`` is replaced as a whole (its previous files are not merged in).
    """
    cfg = _cfg(cfg)
    dest = Path(local_dir)
    if dest.exists() and not dest.is_dir():
        raise DataError(f"{dest}: exists and is not a folder; choose another download path")
    bucket, prefix = parse_s3_uri(uri)
    keys = list_keys(uri, cfg)
    if not keys:
        raise S3NotFoundError(f"{uri}: no objects under this prefix at {cfg.endpoint_name}; check the URI")
    folder = f"{prefix}/" if prefix else ""
    jobs = []
    for key in keys:
        rel = PurePosixPath(key[len(folder):])
        if not rel.parts or any(p in ("", ".", "..") for p in rel.parts) or rel.is_absolute():
            raise StorageError(f"{_uri(bucket, key)}: unsafe object key for a local path; refusing to download")
        jobs.append((key, rel))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    client = make_client(cfg)

    def fetch(job):
        key, rel = job
        target = tmp.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        _get(client, bucket, key, target, cfg)

    try:
        _run_parallel(fetch, jobs, workers, f"download {uri}")
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old / dest.name)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# ------------------------------------------------------------------------------------ buckets, exists
def exists(uri: str, cfg: S3Config | None = None) -> bool:
    """True if ``uri`` names an existing bucket, object, or non-empty folder prefix.

    A missing bucket is False; auth and connection failures raise.
    """
    from botocore.exceptions import ClientError

    cfg = _cfg(cfg)
    bucket, key = parse_s3_uri(uri)
    client = make_client(cfg)

    def missing(exc: ClientError) -> bool:
        code, status, _ = _client_error_code(exc)
        return code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound") or status == 404

    with _s3_errors(uri, cfg):
        if not key:
            try:
                client.head_bucket(Bucket=bucket)
                return True
            except ClientError as exc:
                if missing(exc):
                    return False
                raise
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if not missing(exc):
                raise
        try:
            resp = client.list_objects_v2(Bucket=bucket, Prefix=f"{key}/", MaxKeys=1)
        except ClientError as exc:
            if missing(exc):
                return False
            raise
        return resp.get("KeyCount", len(resp.get("Contents", []))) > 0


def ensure_bucket(bucket: str, cfg: S3Config | None = None) -> bool:
    """Create ``bucket`` unless it exists; True if it was created. Accepts ``s3://bucket`` too."""
    from botocore.exceptions import ClientError

    cfg = _cfg(cfg)
    name = parse_s3_uri(bucket if bucket.startswith("s3://") else f"s3://{bucket}")[0]
    uri = _uri(name)
    client = make_client(cfg)
    with _s3_errors(uri, cfg):
        try:
            client.head_bucket(Bucket=name)
            return False
        except ClientError as exc:
            code, status, _ = _client_error_code(exc)
            if not (code in ("404", "NoSuchBucket", "NotFound") or status == 404):
                raise
        kwargs = {}
        if cfg.region != DEFAULT_REGION:
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        try:
            client.create_bucket(Bucket=name, **kwargs)
        except ClientError as exc:
            if _client_error_code(exc)[0] == "BucketAlreadyOwnedByYou":
                return False
            raise
    return True
