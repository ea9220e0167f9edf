"""drtl.storage, DVC and MLflow against a real S3 server (SeaweedFS on 127.0.0.1, one per session)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from drtl import storage
from drtl.data.folder import sha256_file
from drtl.errors import ConfigError, DataError, DRTLError
from drtl.storage import S3Config
from tests.conftest import rand_img, save
from tests.s3server import free_ports, make_bucket, put_folder, seaweed_s3  # noqa: F401  (session fixture)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------- helpers
def tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def make_dataset(root: Path, rng, n: int = 3) -> Path:
    """A tiny paired folder: HR/*.png, LR/*.png (half size), manifest.csv."""
    from drtl.data.folder import write_manifest

    for i in range(n):
        hr = rand_img(rng, 16, 16)
        save(root / "HR" / f"{i:03d}.png", hr)
        save(root / "LR" / f"{i:03d}.png", hr[::2, ::2].copy())
    write_manifest(root, 2)
    return root


def new_bucket(server, cfg: S3Config) -> str:
    return make_bucket(cfg, f"drtl-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def cfg(seaweed_s3):
    return S3Config(endpoint_url=seaweed_s3.endpoint_url, access_key=seaweed_s3.access_key,
                    secret_key=seaweed_s3.secret_key)


@pytest.fixture
def bucket(seaweed_s3, cfg):
    return new_bucket(seaweed_s3, cfg)


# ------------------------------------------------------------------------------- config and URIs (no server)
def test_parse_s3_uri():
    assert storage.parse_s3_uri("s3://my-bucket") == ("my-bucket", "")
    assert storage.parse_s3_uri("s3://my-bucket/") == ("my-bucket", "")
    assert storage.parse_s3_uri("s3://my-bucket/a/b/") == ("my-bucket", "a/b")
    assert storage.parse_s3_uri("s3://my.bucket//a//b") == ("my.bucket", "a/b")
    assert storage.join_uri("s3://bkt/a", "b/", "/c.txt") == "s3://bkt/a/b/c.txt"
    for bad in ["bucket/prefix", "http://bkt/x", "s3://", "s3:///x", "s3://B/x", "s3://ab/x", "s3://bkt/a/../b", 3]:
        with pytest.raises(ConfigError) as ei:
            storage.parse_s3_uri(bad)
        assert "\n" not in str(ei.value) and "s3://" in str(ei.value)


def test_config_from_env():
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_DEFAULT_REGION": "eu-west-1", "DRTL_S3_URI": "s3://bkt/runs"}
    c = S3Config.from_env(env)
    assert (c.endpoint_url, c.access_key, c.secret_key, c.region) == ("http://127.0.0.1:9", "k", "s", "eu-west-1")
    assert c.uri("x", "y.pt") == "s3://bkt/runs/x/y.pt"
    assert "s" not in repr(c).split("secret_key=")[1].split(",")[0]  # the secret is never printed
    # the most specific endpoint variable wins; explicit arguments win over the environment
    env2 = dict(env, AWS_ENDPOINT_URL="http://127.0.0.1:8", DRTL_S3_ENDPOINT="http://127.0.0.1:7")
    assert S3Config.from_env(env2).endpoint_url == "http://127.0.0.1:7"
    assert S3Config.from_env(env2, endpoint_url="http://127.0.0.1:6").endpoint_url == "http://127.0.0.1:6"
    assert S3Config.from_env({}).endpoint_url is None and S3Config.from_env({}).region == "us-east-1"
    with pytest.raises(ConfigError, match="AWS_SECRET_ACCESS_KEY"):
        S3Config.from_env({"AWS_ACCESS_KEY_ID": "k"})
    with pytest.raises(ConfigError, match="http"):
        S3Config(endpoint_url="127.0.0.1:9000")
    with pytest.raises(ConfigError, match="DRTL_S3_URI"):
        S3Config().uri("x")


def test_connection_refused_is_one_line(tmp_path):
    (port,) = free_ports(1)
    c = S3Config(endpoint_url=f"http://127.0.0.1:{port}", access_key="k", secret_key="s", max_attempts=1,
                 connect_timeout=2)
    with pytest.raises(storage.S3ConnectionError) as ei:
        storage.download_folder("s3://bkt/x", tmp_path / "out", c)
    msg = str(ei.value)
    assert "\n" not in msg and f"127.0.0.1:{port}" in msg and "s3://bkt/x" in msg
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_library_does_not_import_kfp():
    code = "import sys, drtl.storage; assert 'kfp' not in sys.modules; assert 'boto3' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------------ against SeaweedFS
def test_folder_round_trip(tmp_path, rng, cfg, bucket):
    src = make_dataset(tmp_path / "pairs", rng)
    uri = f"s3://{bucket}/datasets/pairs"
    keys = put_folder(cfg, src, uri)
    assert len(keys) == 7  # 3 HR + 3 LR + manifest
    put_folder(cfg, src, f"s3://{bucket}/datasets/pairs-other")  # a sibling prefix is not listed
    assert storage.list_keys(uri, cfg) == keys

    dest = tmp_path / "restored"
    (dest / "stale").mkdir(parents=True)
    (dest / "stale" / "old.txt").write_text("replaced as a whole")
    assert storage.download_folder(uri, dest, cfg) == dest
    assert tree_hashes(dest) == tree_hashes(src)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp siblings left


def test_config_from_environment_reaches_server(tmp_path, rng, monkeypatch, seaweed_s3, cfg, bucket):
    src = make_dataset(tmp_path / "pairs", rng, n=1)
    put_folder(cfg, src, f"s3://{bucket}/env")
    for k in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL", "DRTL_S3_ENDPOINT"]:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed_s3.secret_key)
    monkeypatch.setenv("DRTL_S3_ENDPOINT", seaweed_s3.endpoint_url)
    assert storage.download_folder(f"s3://{bucket}/env", tmp_path / "got") == tmp_path / "got"  # no cfg: the env
    assert tree_hashes(tmp_path / "got") == tree_hashes(src)


@pytest.mark.parametrize("which", ["secret", "key"])
def test_wrong_credentials_rejected(tmp_path, rng, seaweed_s3, cfg, bucket, which):
    src = make_dataset(tmp_path / "pairs", rng, n=1)
    uri = f"s3://{bucket}/creds"
    put_folder(cfg, src, uri)
    bad = cfg.with_(secret_key="wrong-secret") if which == "secret" else cfg.with_(access_key="nobody")

    existing = tmp_path / "existing"
    (existing / "HR").mkdir(parents=True)
    (existing / "HR" / "keep.png").write_bytes(b"keep me")
    before = tree_hashes(existing)
    for call in (lambda: storage.download_folder(uri, existing, bad),
                 lambda: storage.download_folder(uri, tmp_path / "fresh", bad),
                 lambda: storage.list_keys(uri, bad)):
        with pytest.raises(storage.S3AuthError) as ei:
            call()
        msg = str(ei.value)
        assert isinstance(ei.value, DRTLError) and "\n" not in msg
        assert seaweed_s3.endpoint_url in msg and "s3://" in msg
        assert ("AWS_SECRET_ACCESS_KEY" if which == "secret" else "AWS_ACCESS_KEY_ID") in msg
    assert tree_hashes(existing) == before
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "pairs"]  # no partial / temp folders


def test_failed_download_leaves_existing_folder(tmp_path, rng, cfg, bucket, monkeypatch):
    src = make_dataset(tmp_path / "pairs", rng)
    uri = f"s3://{bucket}/partial"
    put_folder(cfg, src, uri)
    dest = tmp_path / "dest"
    (dest / "HR").mkdir(parents=True)
    (dest / "HR" / "keep.png").write_bytes(b"keep me")
    before = tree_hashes(dest)

    real_get, calls = storage.transfer._get, []

    def flaky_get(client, bkt, key, target, c):
        calls.append(key)
        if len(calls) == 4:  # fail mid-way, after some files have arrived
            raise storage.StorageError(f"s3://{bkt}/{key}: simulated failure")
        return real_get(client, bkt, key, target, c)

    monkeypatch.setattr(storage.transfer, "_get", flaky_get)
    with pytest.raises(storage.StorageError, match="simulated"):
        storage.download_folder(uri, dest, cfg, workers=1)
    assert tree_hashes(dest) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "pairs"]


def test_missing_bucket_and_prefix(tmp_path, cfg, bucket):
    with pytest.raises(storage.S3NotFoundError, match="no-such-bucket-drtl.*not found"):
        storage.download_folder("s3://no-such-bucket-drtl/x", tmp_path / "out", cfg)
    with pytest.raises(storage.S3NotFoundError, match="no objects"):
        storage.download_folder(f"s3://{bucket}/empty", tmp_path / "out", cfg)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        storage.download_folder(f"s3://{bucket}/empty", tmp_path / "file", cfg)
    assert not (tmp_path / "out").exists() and (tmp_path / "file").read_text() == "x"


# ------------------------------------------------------------------------------------------------ DVC
def _isolated_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "DVC_", "GIT_", "MLFLOW_", "XDG_")) and k != "DRTL_S3_ENDPOINT"}
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
               XDG_DATA_HOME=str(home / ".local/share"), DVC_NO_ANALYTICS="1",
               DVC_SITE_CACHE_DIR=str(tmp_path / "dvc-site-cache"), DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
               DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"), GIT_CONFIG_NOSYSTEM="1")
    return env


def test_dvc_push_pull(tmp_path, rng, seaweed_s3, cfg, bucket):
    dvc = BIN / "dvc"
    if not dvc.exists():
        pytest.skip(f"{dvc} not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    env = _isolated_env(tmp_path)

    def run(*args, tool=str(dvc)):
        r = subprocess.run([tool, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    make_dataset(repo / "data", rng)
    want = tree_hashes(repo / "data")
    run("init", "-q", tool="git")
    run("init", "-q")
    run("add", "data")
    run("remote", "add", "-d", "s3", f"s3://{bucket}/dvcstore")
    run("remote", "modify", "s3", "endpointurl", seaweed_s3.endpoint_url)
    run("remote", "modify", "--local", "s3", "access_key_id", seaweed_s3.access_key)
    run("remote", "modify", "--local", "s3", "secret_access_key", seaweed_s3.secret_key)
    assert seaweed_s3.secret_key not in (repo / ".dvc" / "config").read_text()  # secret stays in config.local
    run("push")
    assert storage.list_keys(f"s3://{bucket}/dvcstore", cfg)  # objects landed in the bucket

    import shutil

    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run("pull")
    assert tree_hashes(repo / "data") == want


# --------------------------------------------------------------------------------------------- MLflow
def test_mlflow_artifacts_on_s3(tmp_path, monkeypatch, seaweed_s3, cfg, bucket):
    mlflow = pytest.importorskip("mlflow")
    for k, v in seaweed_s3.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    payload = tmp_path / "metrics.json"
    payload.write_text('{"psnr": 30.5}\n')

    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("drtl-s3", artifact_location=f"s3://{bucket}/mlflow")
    run = client.create_run(exp_id)
    client.log_artifact(run.info.run_id, str(payload), artifact_path="reports")
    client.set_terminated(run.info.run_id)

    key = f"mlflow/{run.info.run_id}/artifacts/reports/metrics.json"
    obj = storage.make_client(cfg).get_object(Bucket=bucket, Key=key)
    assert obj["Body"].read() == payload.read_bytes()
    got = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="reports/metrics.json",
                                              dst_path=str(tmp_path / "dl"))
    assert Path(got).read_bytes() == payload.read_bytes()
