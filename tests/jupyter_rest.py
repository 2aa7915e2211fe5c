"""jupyter_server's REST API, as the tests call it: token in the header, errors raised."""

from __future__ import annotations

import requests


def rest(port: int, token: str, method: str, path: str, timeout: float = 60, **kwargs) -> requests.Response:
    response = requests.request(
        method, f"http://127.0.0.1:{port}/api/{path}",
        headers={"Authorization": f"token {token}"}, timeout=timeout, **kwargs,
    )
    response.raise_for_status()
    return response
