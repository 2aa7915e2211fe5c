"""Kernelspecs from the cluster are inert at the server's origin (issue 26).

A user's (or a neighbour's planted) kernelspec directory holds a ``logo-svg.svg`` whose script
hides in a namespace (``<s:script>``), which passed the old text filter; opened in a browser at
the server's origin it would read ``_xsrf`` and act as the user. The control shows this payload
running in headless Chromium when served as ``image/svg+xml`` without a sandbox, and not with
``Content-Security-Policy: sandbox``; the server does not serve it at all, and sandboxes every
kernelspec resource it does serve. A spec in a directory another user owns is skipped unless
the site trusts that directory; the listing is bounded in total.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path


from jupyter_hpc.kernelspecs import remote_discovery
from lab_browser import browser  # noqa: F401 (a fixture)
from test_discovery import (  # noqa: F401 (fixtures)
    OTHER, PNG, USER, chown_tree, disco_sshd, disco_user, home, servers, specs, write_spec,
)

PAYLOAD = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:s="http://www.w3.org/2000/svg" width="64" height="64">'
           b'<s:script>document.title = "pwned " + document.cookie.length</s:script>'
           b'<rect width="64" height="64"/></svg>')


class PayloadServer(http.server.ThreadingHTTPServer):
    """The control: the same bytes as image/svg+xml, at /plain without a sandbox, at /sandboxed with it."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "image/svg+xml")
                if self.path.startswith("/sandboxed"):
                    self.send_header("Content-Security-Policy", "sandbox")
                self.end_headers()
                self.wfile.write(PAYLOAD)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def listed(server, expected: set[str], timeout: float = 60) -> dict:
    """The server's specs once its first discovery is in (the first answer may come before it)."""
    deadline = time.monotonic() + timeout
    while True:
        found = specs(server)
        if expected <= set(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def title_after(page, url: str) -> tuple[int, str]:
    response = page.goto(url)
    page.wait_for_timeout(300)  # a script in the SVG would have run by now
    return response.status, page.title()


def test_a_planted_svg_logo_never_runs_at_the_servers_origin(home, disco_sshd, remote_python, servers, browser):  # noqa: F811
    planted = home / ".local" / "share" / "jupyter" / "kernels" / "planted"
    write_spec(planted, {"argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                         "display_name": "Planted", "language": "python"})
    (planted / "logo-svg.svg").write_bytes(PAYLOAD)
    (planted / "logo-64x64.png").write_bytes(PNG)
    chown_tree(home / ".local", USER)
    server = servers(disco_sshd, remote_python)
    model = listed(server, {"cori-login-planted"})["cori-login-planted"]
    assert set(model["resources"]) == {"logo-64x64"}, model["resources"]  # the launcher shows the PNG

    control = PayloadServer()
    context = browser.new_context()
    page = context.new_page()
    try:
        # The payload is live: served plainly it runs in Chromium; with the sandbox it does not.
        assert title_after(page, f"http://127.0.0.1:{control.server_address[1]}/plain.svg")[1].startswith("pwned")
        assert not title_after(page, f"http://127.0.0.1:{control.server_address[1]}/sandboxed.svg")[1].startswith("pwned")
        # The user's browser at the server: logged in (a cookie), the SVG is not there to run.
        base = f"http://127.0.0.1:{server.port}"
        page.goto(f"{base}/api/status?token={server.token}")
        assert any(c["name"].startswith("username-") or "_xsrf" in c["name"] for c in context.cookies()), context.cookies()
        status, title = title_after(page, f"{base}/kernelspecs/cori-login-planted/logo-svg.svg")
        assert status == 404 and not title.startswith("pwned"), (status, title)
        # What is served carries the sandbox: the logo, and kernel.json.
        for name in ("logo-64x64.png", "kernel.json"):
            answer = page.request.get(f"{base}/kernelspecs/cori-login-planted/{name}")
            assert answer.status == 200, (name, answer.status)
            policy = [p.strip() for p in answer.headers["content-security-policy"].split(";")]
            assert "sandbox" in policy, (name, policy)
        assert page.request.get(f"{base}/kernelspecs/cori-login-planted/logo-64x64.png").body() == PNG
    finally:
        context.close()
        control.shutdown()
        control.server_close()


def test_a_spec_in_another_users_directory_runs_only_where_the_site_trusts_it(
    home, disco_sshd, remote_python, servers, tmp_path
):
    kernels = home / ".local" / "share" / "jupyter" / "kernels"
    spec = {"argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "Group"}
    # A group software stack owned by its maintainer (another user), linked into the user's kernels.
    stack = Path(tempfile.mkdtemp(prefix="jupyter-hpc-stack-"))
    write_spec(stack / "kernels" / "groupenv", spec)
    chown_tree(stack, OTHER)
    os.chmod(stack, 0o755)
    write_spec(kernels / "mine", {**spec, "display_name": "Mine"})
    (kernels / "groupenv").symlink_to(stack / "kernels" / "groupenv")
    # A directory right in the user's kernels, but another user's (planted, or left by an admin's copy).
    write_spec(kernels / "planted", {**spec, "display_name": "Planted"})
    chown_tree(home / ".local", USER)
    chown_tree(kernels / "planted", OTHER)
    try:
        server = servers(disco_sshd, remote_python)
        assert sorted(listed(server, {"cori-login-mine"})) == ["cori-login-mine"], specs(server)
        assert "trusted_kernel_dirs" in server.log and "owned by another user" in server.log
        site = {"display_name": "Cori", **disco_sshd.provisioner_config(USER, remote_python=remote_python),
                "trusted_kernel_dirs": [str(stack / "kernels")]}
        trusting = servers(disco_sshd, remote_python, server_config={"HPCSites": {"sites": {"cori": site}}})
        both = {"cori-login-groupenv", "cori-login-mine"}
        assert set(listed(trusting, both)) == both, specs(trusting)
    finally:
        shutil.rmtree(stack, ignore_errors=True)


def test_the_listing_is_bounded_in_total(tmp_path):
    """The discovery snippet itself, on real files: past max_total bytes, further specs are
    skipped with a warning instead of growing the answer (2000 specs of 1 MB each would be 2 GB)."""
    kernels = tmp_path / "share" / "kernels"
    for n in range(5):
        write_spec(kernels / f"k{n}", {"argv": ["python3"], "display_name": "x" * 150, "metadata": {"pad": "y" * 400}})
    answer = remote_discovery.discover({"max_total": 1500}, environ={"JUPYTER_PATH": str(tmp_path / "share"),
                                                                     "JUPYTER_PREFER_ENV_PATH": "0"})
    mine = [s for s in answer["specs"] if s["dir"].startswith(str(kernels))]
    assert len(mine) == 2, [s["name"] for s in mine]
    skipped = [w for w in answer["warnings"] if w.startswith(str(kernels)) and "would pass 1500 bytes" in w]
    assert len(skipped) == 3, answer["warnings"]
    assert len(json.dumps(answer)) < 20000
