"""A scratch DVC repository for the tests: a git repository holding a copy of the pipeline files
(dvc.yaml, params.yaml, data.dvc, dvc-remote/, .dvc/config and plot template, and the drtl/ sources
that stages declare as dependencies), with HOME/XDG in tmp, no analytics and no network. DVC runs
the real `drtl` CLI of this environment."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DVC = BIN / "dvc"


def env_for(root: Path) -> dict:
    """The environment of a tool run in the scratch repository ``root`` (its own HOME next to it)."""
    home = root.parent / f"{root.name}-home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "DRTL_PIPELINE", "MLFLOW_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local"), "DVC_NO_ANALYTICS": "1", "DRTL_PROGRESS": "0",
        "GX_ANALYTICS_ENABLED": "False", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        # tiny tensors on a shared 2-core machine: one thread each avoids oversubscription stalls
        "OMP_NUM_THREADS": "1",
    })
    return env


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env=env_for(root), check=True, capture_output=True)


def make_copy(dest: Path, params: dict | None = None) -> Path:
    """A git repository at ``dest`` with the pipeline files; its params.yaml is ``params`` written
    out in full (every key, as DVC needs), else the repository's."""
    dest.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", "data.dvc", ".dvcignore"):
        shutil.copy2(REPO / name, dest / name)
    if params is not None:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(REPO / "dvc-remote", dest / "dvc-remote")
    (dest / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy2(REPO / ".dvc" / name, dest / ".dvc" / name)
    shutil.copytree(REPO / ".dvc" / "plots", dest / ".dvc" / "plots")
    shutil.copytree(REPO / "drtl", dest / "drtl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / ".gitignore").write_text("/data/\n/outputs/\n/reports/\n/mlflow.db\n/mlruns/\n")
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "pipeline copy")
    return dest


def dvc(root: Path, *args: str, ok: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run([str(DVC), *args], cwd=root, env=env_for(root), capture_output=True, text=True,
                         timeout=timeout)
    if ok:
        assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


def ran(out: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out.stdout + out.stderr))


def skipped(out: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Stage '([^']+)' didn't change, skipping", out.stdout + out.stderr))
