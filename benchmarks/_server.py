"""Start the dashboard on a free loopback port and drive it with Debian's Chromium (shared by tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import NamedTuple

from core.config import REPO_ROOT
from core.report import CHROMIUM

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server(NamedTuple):
    url: str
    seconds: float  # from start until the health check answered
    pid: int


@contextlib.contextmanager
def dashboard(env: dict[str, str] | None = None, timeout: float = 90.0) -> Iterator[Server]:
    """Run `streamlit run app.py` on 127.0.0.1 until the block ends.

    The server's output is discarded, or appended to the file FACEAUDIT_SERVER_LOG names (to debug a browser test).
    """
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    started = time.perf_counter()
    log_path = os.environ.get("FACEAUDIT_SERVER_LOG")
    log = open(log_path, "a") if log_path else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.perf_counter() - started > timeout:
                    raise RuntimeError(f"the dashboard did not start on {url}") from None
                time.sleep(0.2)
        yield Server(url, time.perf_counter() - started, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        if log is not subprocess.DEVNULL:
            log.close()


def launch_chromium(playwright):
    """Debian's Chromium through Playwright (never Playwright's own browser download)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
