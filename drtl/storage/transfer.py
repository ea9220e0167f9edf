"""Reading from S3: a folder download (atomic) and the listing it needs. Progress bars show on a
terminal only (:mod:`drtl.progress`). Datasets go to S3 with DVC (``dvc push`` to an S3 remote,
docs/storage.md), not through this module."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from drtl.errors import DataError
from drtl.storage.config import S3Config, config_or_env, make_client, object_uri, parse_s3_uri
from drtl.storage.errors import S3NotFoundError, StorageError, s3_errors


def _transfer_config():
    from boto3.s3.transfer import TransferConfig

    # multipart above 64 MiB; no threads inside a single file (folders parallelise across files)
    return TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, use_threads=False)


def _get(client, bucket: str, key: str, dest: Path, cfg: S3Config) -> None:
    with s3_errors(object_uri(bucket, key), cfg):
        client.download_file(bucket, key, str(dest), Config=_transfer_config())


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
