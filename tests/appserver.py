"""Start the real app (app.py) as a server on 127.0.0.1 in a child process, for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import HANG_GUARD_S, ROOT, subprocess_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppServer:
    """`python app.py` with the given environment; stopped on exit of the `with` block."""

    def __init__(self, log_path: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        self.env = subprocess_env(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(self.port), **env)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "AppServer":
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + HANG_GUARD_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"app did not answer at {self.url}:\n{self.output()}")

    def client(self):
        """A gradio_client Client of this server. httpx's own 5 s default would turn a busy CPU into a
        "timed out" failure; here only a hang fails."""
        from gradio_client import Client

        return Client(self.url, verbose=False, httpx_kwargs={"timeout": HANG_GUARD_S})

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()
