"""Seconds from `python app.py` to a served page, and for `python -m inspector inspect` to its
answer, on a machine without network and with nothing set.

    python benchmarks/start_time.py            # no network emulated: the Hub's endpoint a closed local port
    python benchmarks/start_time.py --as-is    # this machine's own network and environment

Without network the app used to retry each of the base model's files five times with
back-off (about 150 s) before the page came up; now one reachability check decides and
the Hub cache alone is used. The default emulates a machine with no route to the Hub:
HF_HUB_OFFLINE unset, the endpoint a local port nothing listens on (refused at once, as
"Name or service not known" is), an empty Hub cache. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(as_is: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for key in ("INSPECTOR_BASE_MODEL", "INSPECTOR_ADAPTER", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(key, None)
    if not as_is:
        env.update(HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HUB_CACHE=tempfile.mkdtemp(prefix="empty-cache-"))
    return env


def time_app(env: dict[str, str], limit_s: float) -> float:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env=dict(env, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port)))
    try:
        while time.perf_counter() - started < limit_s:
            if process.poll() is not None:
                raise RuntimeError(f"app.py exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"no page within {limit_s} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


def time_cli(env: dict[str, str]) -> tuple[float, int]:
    photo = ROOT / "examples" / "clean-coffee.png"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "inspector", "inspect", str(photo), "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)  # exit 2 without a model is expected
    return time.perf_counter() - started, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--as-is", action="store_true", help="use this machine's network and environment as they are")
    parser.add_argument("--limit", type=float, default=600.0, help="give up on the page after this many seconds")
    args = parser.parse_args()
    env = environment(args.as_is)
    load = os.getloadavg()[0]
    app_s = time_app(env, args.limit)
    cli_s, cli_code = time_cli(env)
    from inspector.device import cpu_kind

    print(json.dumps({"app_page_s": round(app_s, 1), "cli_inspect_s": round(cli_s, 1), "cli_exit_code": cli_code,
                      "network": "as is" if args.as_is else "none (closed local endpoint)",
                      "cpu": cpu_kind(), "cpus": os.cpu_count(), "load_average_start": round(load, 2),
                      "load_average_end": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
