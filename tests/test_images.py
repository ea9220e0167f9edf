"""The container images (docker/): what they install is requirements.lock, checked without building.

Building the image takes minutes (`make image`, docker/build.sh: buildah on a debootstrap base), so
it stays out of the test lanes; these tests check the files the build runs: the Dockerfiles' install
steps, the lock check that ends every build (docker/check_lock.py), the comparison of the in-image
stage outputs with the host's (docker/compare_runs.py) and `drtl-kfp compile --image` with the
reference `make image` writes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from tests.conftest import REPO

DOCKERFILES = ["Dockerfile", "Dockerfile.cpu"]


def _instructions(name: str) -> list[str]:
    """The Dockerfile's instructions: continuation lines joined, comments dropped."""
    text = (REPO / "docker" / name).read_text()
    return [ln.strip() for ln in re.sub(r"\\\n", " ", text).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _args(lines: list[str]) -> dict[str, str]:
    return dict(re.findall(r"^ARG\s+(\w+)=(\S*)", "\n".join(lines), flags=re.M))


def _pip_installs(lines: list[str]) -> list[str]:
    """Every `pip install ...` of the RUN steps, in order, with ARG defaults substituted."""
    args, out = _args(lines), []
    for ln in lines:
        if ln.startswith("RUN "):
            for cmd in re.split(r"&&|;", ln[4:]):
                cmd = " ".join(cmd.split())
                if cmd.startswith("pip install"):
                    cmd = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), cmd)
                    out.append(cmd.replace('"', ""))
    return out


def _lock() -> dict[str, str]:
    pins = (ln.split("==") for ln in (REPO / "requirements.lock").read_text().splitlines() if "==" in ln)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pin_base_and_install_exactly_the_lock(name):
    lines = _instructions(name)
    args = _args(lines)
    froms = [ln.split()[1] for ln in lines if ln.upper().startswith("FROM ")]
    assert froms, "no FROM line"
    for base in froms:
        base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), base)
        assert "$" not in base and re.search(r":\d", base) and not base.endswith(":latest"), f"unpinned base {base}"
    installs = _pip_installs(lines)
    lock = _lock()
    # the packages: the lock with --no-deps (no resolver), pip pinned, the project without build isolation
    assert "pip install --no-deps -r requirements.lock" in installs
    assert installs[-1] == "pip install --no-deps --no-build-isolation ."
    assert re.fullmatch(r"pip install --no-deps pip==\d+\.\d+(\.\d+)?", installs[0]), installs[0]
    rest = [c for c in installs[1:-1] if c != "pip install --no-deps -r requirements.lock"]
    if name == "Dockerfile":  # CUDA: the locked torch version from a CUDA index, constrained by the lock
        assert rest == [f"pip install -c requirements.lock --extra-index-url https://pypi.org/simple torch=={lock['torch']}"]
    else:
        assert rest == [] and args["PIP_EXTRA_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # the build ends with the lock check, after the last install
    body = "\n".join(lines)
    check = "python docker/check_lock.py requirements.lock" + (" --torch-deps" if name == "Dockerfile" else "")
    assert check in body and body.index(check) > body.index("--no-build-isolation .")
    # every package of pyproject's packages.find is copied into the build
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pkg in include:
        assert re.search(rf"^COPY {pkg.rstrip('*')} ", body, flags=re.M), f"{pkg} is not copied"


def test_dockerignore_keeps_only_what_the_dockerfiles_copy():
    entries = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert entries[0] == "*", "the context must start from nothing"
    kept = {e[1:] for e in entries if e.startswith("!")}
    copied = set()
    for name in DOCKERFILES:
        for ln in _instructions(name):
            if ln.startswith("COPY "):
                copied |= {s.rstrip("/") for s in ln.split()[1:-1] if not s.startswith("--")}
    assert copied == kept, f"copied {sorted(copied)} but the context keeps {sorted(kept)}"


def test_lock_torch_pin_is_the_project_pin():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = _lock()
    for dep in deps:
        name, version = re.split(r"==", dep)
        assert lock[re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).lower()] == version, dep


def _check_lock(lock_path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "docker" / "check_lock.py"), str(lock_path), *extra],
                          capture_output=True, text=True)


def test_check_lock_passes_on_the_locked_environment_and_names_each_difference(tmp_path):
    """The check that ends each image build, run on this environment (installed from the same lock)."""
    ok = _check_lock(REPO / "requirements.lock")
    assert ok.returncode == 0 and f"({len(_lock())} packages)" in ok.stdout, ok.stdout + ok.stderr
    lines = (REPO / "requirements.lock").read_text().splitlines()
    lines = [ln for ln in lines if not ln.startswith("six==")]  # installed but no longer locked
    lines = [re.sub(r"^numpy==.*", "numpy==1.0.0", ln) for ln in lines]  # another version
    lines.append("not-a-package==1.0")  # locked but not installed
    bad = tmp_path / "requirements.lock"
    bad.write_text("\n".join(lines) + "\n")
    r = _check_lock(bad)
    assert r.returncode == 1 and len(r.stdout.splitlines()) == 1, r.stdout
    for what in ("missing not-a-package==1.0", "numpy==", "but the lock pins ==1.0.0", "not in the lock: six=="):
        assert what in r.stdout, (what, r.stdout)
    bad.write_text("numpy>=1\n")
    r = _check_lock(bad)
    assert r.returncode != 0 and "is not pinned with ==" in r.stdout + r.stderr


def _smoke_folder(root, loss=0.1, model=b"weights"):
    (root / "runs" / "ft").mkdir(parents=True)
    (root / "runs" / "ft" / "model.pt").write_bytes(model)
    (root / "runs" / "ft" / "history.json").write_text(
        f'{{"loss": [{loss}], "log": [{{"step": 1, "elapsed_s": {loss * 7}}}], "wall_s": 1.5}}')
    (root / "runs" / "ft" / "run.json").write_text(f'{{"started": "{root.name}"}}')
    (root / "runs" / "ev").mkdir(parents=True)
    (root / "runs" / "ev" / "eval.json").write_text('{"psnr_y": 30.5, "ssim_y": 0.8, "psnr_rgb": 28.0}')


def test_compare_runs_ignores_records_and_timings_and_nothing_else(tmp_path):
    sys.path.insert(0, str(REPO / "docker"))
    try:
        import compare_runs
    finally:
        sys.path.pop(0)
    a, b = tmp_path / "host", tmp_path / "image"
    _smoke_folder(a)
    _smoke_folder(b)
    ((b / "runs" / "ft" / "history.json")).write_text(
        '{"loss": [0.1], "log": [{"step": 1, "elapsed_s": 99.0}], "wall_s": 7.0}')  # other timings only
    assert compare_runs.main([str(a), str(b)]) == 0
    (b / "runs" / "ft" / "model.pt").write_bytes(b"weightz")
    lines, bad = compare_runs.compare(a, b)
    assert bad == ["runs/ft/model.pt"] and any("DIFFERENT bytes" in ln for ln in lines)
    shutil.rmtree(b)
    _smoke_folder(b, loss=0.2)
    assert compare_runs.compare(a, b)[1] == ["runs/ft/history.json"]
    (b / "extra.png").write_bytes(b"x")
    assert compare_runs.main([str(a), str(b)]) == 1


def test_build_scripts_parse():
    for script in ("docker/build.sh", "docker/stage_smoke.sh"):
        r = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
        assert r.returncode == 0, (script, r.stderr)
    for path in ("drtl-cpu.oci.tar", "outputs/image/drtl-cpu.oci.tar", "docker/x.oci.tar"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert ignored.returncode == 0, f"{path}: OCI archives must be git-ignored"


def test_kfp_compile_takes_the_reference_make_image_writes(tmp_path, capsys):
    from pipelines.cli import main

    ref = "localhost/drtl@sha256:" + "0123456789abcdef" * 4
    (tmp_path / "drtl-cpu.image").write_text(ref + "\n")
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", "--no-gpu", "--no-k8s", "--params", str(REPO / "configs" / "tiny.yaml"),
                 "--image", str(tmp_path / "drtl-cpu.image"), "--out", str(out)]) == 0
    images = {c["container"]["image"] for c in yaml.safe_load_all(out.read_text()) if c and "deploymentSpec" in c
              for c in c["deploymentSpec"]["executors"].values()}
    assert images == {ref}
    assert f"image {ref}" in capsys.readouterr().out
    for bad in ("sha256:" + "0" * 64, "localhost/drtl@sha256:", "localhost/drtl@sha256:XYZ", "Drtl/Upper"):
        (tmp_path / "bad.image").write_text(bad)
        assert main(["compile", "--no-gpu", "--no-k8s", "--image", str(tmp_path / "bad.image"), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("drtl-kfp: error: --image "), err
        assert ("digest without a name" if bad.startswith("sha256") else "is not an image reference") in err, err
