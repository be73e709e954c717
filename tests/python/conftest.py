"""Fixtures for the Python interop tests: the real `fhirgate demo` on a free loopback port.

The binary is $FHIRGATE_BIN, else $FHIRGATE_TARGET_DIR/debug/fhirgate, else
$CARGO_TARGET_DIR/debug/fhirgate, else <repo>/target/debug/fhirgate; it is built with
`cargo build -p fhirgate` when missing.
"""

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def fhirgate_bin() -> str:
    if os.environ.get("FHIRGATE_BIN"):
        return os.environ["FHIRGATE_BIN"]
    target = (
        os.environ.get("FHIRGATE_TARGET_DIR")
        or os.environ.get("CARGO_TARGET_DIR")
        or str(REPO / "target")
    )
    binary = Path(target) / "debug" / "fhirgate"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "-q", "-p", "fhirgate"],
            cwd=REPO,
            check=True,
            env={**os.environ, "CARGO_TARGET_DIR": target},
        )
    return str(binary)


def fhirgate(*args: str) -> str:
    """Runs a fhirgate CLI command to completion and returns its stdout."""
    run = subprocess.run(
        [fhirgate_bin(), *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"fhirgate {' '.join(args)}: {run.returncode}\n{run.stderr}"
    return run.stdout


class Demo:
    def __init__(self, data_dir: str, origin: str, backend_token: str):
        self.data_dir = data_dir
        self.origin = origin
        self.backend_token = backend_token
        with open(os.path.join(data_dir, "demo.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        self.fhir_base = self.manifest["urls"]["fhir_base"]

    def user(self, name: str) -> dict:
        return next(u for u in self.manifest["users"] if u["username"] == name)

    def client(self, client_id: str) -> dict:
        return next(c for c in self.manifest["clients"] if c["client_id"] == client_id)

    def backend_get(self, path: str) -> dict:
        """Reads through the gateway with the backend-services token the demo printed."""
        resp = requests.get(
            f"{self.fhir_base}/{path}",
            headers={"Authorization": f"Bearer {self.backend_token}"},
            timeout=30,
        )
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="session")
def demo():
    data_dir = tempfile.mkdtemp(prefix="fhirgate-pytest-")
    proc = subprocess.Popen(
        [fhirgate_bin(), "demo", "--listen", "127.0.0.1:0", "--data-dir", data_dir, "--patients", "5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: "queue.Queue[str | None]" = queue.Queue()

    def pump():
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen, token, origin = [], None, None
        while origin is None:
            try:
                line = lines.get(timeout=120)
            except queue.Empty:
                raise AssertionError("fhirgate demo not ready after 120 s:\n" + "".join(seen))
            if line is None:
                raise AssertionError(f"fhirgate demo exited ({proc.wait()}):\n" + "".join(seen))
            seen.append(line)
            if m := re.search(r"Authorization: Bearer ([A-Za-z0-9._-]+)", line):
                token = m.group(1)
            if m := re.search(r"fhirgate demo ready at (http://\S+)", line):
                origin = m.group(1)
        assert token, "the demo printed a backend-services token"
        yield Demo(data_dir, origin, token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
