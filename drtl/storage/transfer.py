"""Transfers: files and folders to and from S3 (folder downloads are atomic), listings, existence
checks and bucket creation. Progress bars show on a terminal only (:mod:`drtl.progress`)."""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from drtl.errors import ConfigError, DataError
from drtl.storage.config import DEFAULT_REGION, S3Config, config_or_env, make_client, object_uri, parse_s3_uri
from drtl.storage.errors import S3NotFoundError, StorageError, client_error_code, s3_errors


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    # multipart above 64 MiB; no threads inside a single file (folders parallelise across files)
    return TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, use_threads=False)


def _put(client, path: Path, bucket: str, key: str, cfg: S3Config) -> None:
    with s3_errors(object_uri(bucket, key), cfg):
        client.upload_file(str(path), bucket, key, Config=_transfer_config())


def _get(client, bucket: str, key: str, dest: Path, cfg: S3Config) -> None:
    with s3_errors(object_uri(bucket, key), cfg):
        client.download_file(bucket, key, str(dest), Config=_transfer_config())


def upload_file(local_path: str | os.PathLike, uri: str, cfg: S3Config | None = None) -> str:
    """Upload one file to ``uri`` (a URI ending in ``/`` gets the file's name appended). Returns the key."""
    cfg = config_or_env(cfg)
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
    cfg = config_or_env(cfg)
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
    cfg = config_or_env(cfg)
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
    cfg = config_or_env(cfg)
    bucket, prefix = parse_s3_uri(uri)
    client = make_client(cfg)
    folder = f"{prefix}/" if prefix else ""
    keys: list[str] = []
    with s3_errors(object_uri(bucket, prefix), cfg):
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
    cfg = config_or_env(cfg)
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
            raise StorageError(f"{object_uri(bucket, key)}: unsafe object key for a local path; refusing to download")
        jobs.append((key, rel))
    from drtl.data.folder import staged_folder

    client = make_client(cfg)
    with staged_folder(dest, guard=False) as tmp:

        def fetch(job):
            key, rel = job
            target = tmp.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            _get(client, bucket, key, target, cfg)

        _run_parallel(fetch, jobs, workers, f"download {uri}")
    return dest


# ------------------------------------------------------------------------------------ buckets, exists
def exists(uri: str, cfg: S3Config | None = None) -> bool:
    """True if ``uri`` names an existing bucket, object, or non-empty folder prefix.

    A missing bucket is False; auth and connection failures raise.
    """
    from botocore.exceptions import ClientError

    cfg = config_or_env(cfg)
    bucket, key = parse_s3_uri(uri)
    client = make_client(cfg)

    def missing(exc: ClientError) -> bool:
        code, status, _ = client_error_code(exc)
        return code in ("404", "NoSuchKey", "NoSuchBucket", "NotFound") or status == 404

    with s3_errors(uri, cfg):
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

    cfg = config_or_env(cfg)
    name = parse_s3_uri(bucket if bucket.startswith("s3://") else f"s3://{bucket}")[0]
    uri = object_uri(name)
    client = make_client(cfg)
    with s3_errors(uri, cfg):
        try:
            client.head_bucket(Bucket=name)
            return False
        except ClientError as exc:
            code, status, _ = client_error_code(exc)
            if not (code in ("404", "NoSuchBucket", "NotFound") or status == 404):
                raise
        kwargs = {}
        if cfg.region != DEFAULT_REGION:
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        try:
            client.create_bucket(Bucket=name, **kwargs)
        except ClientError as exc:
            if client_error_code(exc)[0] == "BucketAlreadyOwnedByYou":
                return False
            raise
    return True
