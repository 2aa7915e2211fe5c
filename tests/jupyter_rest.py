"""jupyter_server's REST API, as the tests call it: token in the header, errors raised."""

from __future__ import annotations

from collections.abc import Callable

import contextlib
import subprocess
import time

import requests


def rest(port: int, token: str, method: str, path: str, timeout: float = 60, **kwargs) -> requests.Response:
    response = requests.request(
        method, f"http://127.0.0.1:{port}/api/{path}",
        headers={"Authorization": f"token {token}"}, timeout=timeout, **kwargs,
    )
    response.raise_for_status()
    return response


def wait_until_serving(process: subprocess.Popen, port: int, token: str, started: float, timeout: float,
                       who: str, log: Callable[[], str], interval: float = 0.1) -> float:
    """Poll /api/status until the server answers; seconds since ``started``. A server that
    exits or stays silent fails the test with its log."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{who} exited with {process.returncode}:\n{log()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5,
                            headers={"Authorization": f"token {token}"}).ok:
                return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{who} did not answer within {timeout} s:\n{log()}")
