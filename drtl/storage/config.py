"""Where and how to talk to S3: :class:`S3Config` (from arguments or the environment), the boto3
client, and ``s3://bucket/prefix`` URIs."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache

from drtl.errors import ConfigError

DEFAULT_REGION = "us-east-1"
ENDPOINT_VARS = ("DRTL_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


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


def config_or_env(cfg: S3Config | None) -> S3Config:
    """``cfg``, or the configuration from the environment when it is None."""
    return cfg if cfg is not None else S3Config.from_env()


def make_client(cfg: S3Config | None = None):
    """A boto3 S3 client for ``cfg`` (thread-safe, cached per config; retries and timeouts from ``cfg``)."""
    return _client(config_or_env(cfg))


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


def object_uri(bucket: str, key: str = "") -> str:
    """``s3://bucket/key`` (``s3://bucket`` for an empty key), for messages."""
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
