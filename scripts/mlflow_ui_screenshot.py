#!/usr/bin/env python
"""Screenshot the MLflow UI's experiment page (runs, parent/child) with headless Chromium.

Serves ``mlflow server`` on 127.0.0.1 on a free port against the given store, waits until it
answers ``/health``, loads the experiment's runs page in headless Chromium, expands the parent runs
(over the DevTools protocol, with the ``websocket-client`` package; without it a plain
``--screenshot`` with collapsed parents), saves a PNG, and stops the server by its PID (its process
group).

    python scripts/mlflow_ui_screenshot.py --backend-store-uri sqlite:///mlflow.db --experiment drtl \
        --out docs/img/mlflow_ui.png
    python scripts/mlflow_ui_screenshot.py --demo /tmp/mlflow-demo --out /tmp/ui.png   # a made-up store

(tests/test_mlflow_ui.py checks the same UI with assertions; this script is for a picture.)

Needs Chromium (Debian: ``apt-get install -y chromium``); nothing else leaves the machine: the
browser runs with networking features off and a fresh profile, the server binds loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--disable-extensions", "--disable-default-apps", "--mute-audio"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def start_server(uri: str, port: int, log_path: Path) -> subprocess.Popen:
    mlflow = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow) if mlflow.exists() else "mlflow", "server", "--backend-store-uri", uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = open(log_path, "wb")
    # own process group: stopping it by PID also stops the workers it forks
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group whose leader is the server's PID
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


# The run-name cell's expander button (MLflow 3.x UI): clicked so child runs show under their parent.
EXPAND_JS = ("(() => { const b = document.querySelectorAll('button[data-component-id$=\"runnamecellrenderer.tsx_46\"]');"
             " b.forEach(x => x.click()); return b.length; })()")
READY_JS = "document.querySelectorAll('.ag-row').length"
CLOSE_SIDE_PANEL_JS = "(() => { const c = document.querySelector('button[aria-label=\"Close\"]'); if (c) c.click(); return !!c; })()"


def _cdp_screenshot(url: str, out: Path, width: int, height: int, timeout: float, exe: str, profile: str) -> dict:
    """Drive Chromium over the DevTools protocol: load, expand parent runs, capture the page."""
    import base64
    import json

    import websocket  # websocket-client

    proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
                             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if time.time() > deadline or proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t.get("type") == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        ids = iter(range(1, 10**6))

        def call(method, **params):
            i = next(ids)
            ws.send(json.dumps({"id": i, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    return msg.get("result", {})

        def js(expr):
            return call("Runtime.evaluate", expression=expr, returnByValue=True).get("result", {}).get("value")

        call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        call("Page.navigate", url=url)
        deadline = time.time() + timeout
        while not (js(READY_JS) or 0):
            if time.time() > deadline:
                raise TimeoutError("the runs table did not render")
            time.sleep(0.5)
        time.sleep(1.0)
        closed = js(CLOSE_SIDE_PANEL_JS)
        expanded = js(EXPAND_JS) or 0
        time.sleep(3.0 if expanded else 1.0)
        data = call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
        rows = js(READY_JS)
        with contextlib.suppress(Exception):
            call("Browser.close")
        ws.close()
        return {"expanded_parents": expanded, "rows": rows, "closed_side_panel": bool(closed)}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def screenshot(url: str, out: Path, width: int, height: int, wait_ms: int, chromium: str,
               timeout: float = 90) -> dict:
    """Screenshot ``url``; with websocket-client, over DevTools (parent runs expanded), else ``--screenshot``."""
    exe = shutil.which(chromium) or chromium
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        try:
            return _cdp_screenshot(url, out, width, height, timeout, exe, profile)
        except ImportError:
            pass
        except Exception as exc:  # fall back to the plain screenshot (child runs stay collapsed)
            print(f"warning: DevTools capture failed ({exc}); taking a plain screenshot", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}",
               f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode != 0 or not out.is_file():
        raise RuntimeError(f"chromium failed ({r.returncode}): {r.stderr[-1500:]}")
    return {"expanded_parents": 0}


def make_demo_store(folder: Path) -> str:
    """A small store shaped like a pipeline run (made-up run records logged with
    drtl.tracking.log_records: a parent, its stage runs, the report's aggregate), for trying the script."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from drtl.records import find_records
    from drtl.tracking import log_records
    from tests.tracking_demo import write_demo_records

    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder.resolve() / 'mlflow.db'}"
    write_demo_records(folder / "outputs", methods=("bicubic", "scratch", "pretrain", "drtl_pre", "upper_bound"),
                       shots=(1, 5, 10), seeds=(0,))
    log_records(find_records(folder / "outputs"), {"uri": uri, "experiment": "drtl"}, invocation={"command": "demo"})
    return uri


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend-store-uri", default="sqlite:///mlflow.db")
    ap.add_argument("--experiment", default="drtl", help="experiment whose page is captured")
    ap.add_argument("--out", default="mlflow_ui.png")
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--wait-ms", type=int, default=20000, help="virtual time the page gets to load")
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for the server")
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "chromium"))
    ap.add_argument("--demo", default=None, metavar="DIR", help="first write a small made-up store in DIR")
    a = ap.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from drtl.tracking import make_client, resolve_uri

    uri = make_demo_store(Path(a.demo)) if a.demo else resolve_uri(a.backend_store_uri, root=Path.cwd())
    exp = make_client(uri).get_experiment_by_name(a.experiment)
    if exp is None:
        print(f"error: no experiment {a.experiment!r} in {uri}", file=sys.stderr)
        return 2
    out = Path(a.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = out.with_suffix(".server.log")
    proc = start_server(uri, port, log_path)
    print(f"mlflow server pid {proc.pid} on http://127.0.0.1:{port} (log: {log_path})")
    try:
        wait_http(f"http://127.0.0.1:{port}/health", a.timeout, proc)
        url = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
        info = screenshot(url, out, a.width, a.height, a.wait_ms, a.chromium, a.timeout)
    finally:
        stop_server(proc)
    print(f"{out} ({out.stat().st_size} bytes, {info.get('expanded_parents', 0)} parent run(s) expanded); server stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
