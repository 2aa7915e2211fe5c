"""The server's event loop never waits on SSH: a site that accepts TCP and never answers (a hung
login node) neither delays the first /api/kernelspecs nor stalls the loop while the server starts.

A real jupyter_server with RemoteKernelSpecManager and two sites: the test sshd and a "black
hole" (a listener that accepts connections and never says a word). A loop-lag probe, loaded with
the server's own config, records the loop's longest stall from its first turn on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from server_helpers import Server

PROBE = '''
import asyncio, json, os
from tornado.ioloop import IOLoop

async def _probe(path=os.environ["JUPYTER_HPC_LAG_PROBE"], tick=0.005):
    """Sleep ``tick`` over and over; how late each wake-up is, is how long the loop was held."""
    loop = asyncio.get_running_loop()
    worst, samples, last_write = 0.0, 0, loop.time()
    while True:
        before = loop.time()
        await asyncio.sleep(tick)
        worst = max(worst, loop.time() - before - tick)
        samples += 1
        if loop.time() - last_write > 0.25:
            last_write = loop.time()
            with open(path + ".tmp", "w") as handle:
                json.dump({"max_lag": worst, "samples": samples}, handle)
            os.replace(path + ".tmp", path)

IOLoop.current().add_callback(_probe)
'''


@pytest.fixture
def black_hole():
    """127.0.0.1:<port> accepting TCP connections and never answering (an SSH client waits for
    the banner until its own timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def test_first_kernelspecs_answer_at_once_and_the_loop_never_stalls_on_a_hung_site(
        tmp_path, monkeypatch, sshd, kernel_user, remote_python, black_hole):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "no-local-kernels"))
    probe_file = tmp_path / "lag.json"
    monkeypatch.setenv("JUPYTER_HPC_LAG_PROBE", str(probe_file))
    config = tmp_path / "config"
    config.mkdir()
    good = {"display_name": "Cori", **sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python)}
    hung = {**good, "display_name": "Hung", "port": black_hole}
    (config / "jupyter_server_config.json").write_text(json.dumps({
        "HPCSites": {"sites": {"cori": good, "hung": hung}},
        "RemoteKernelSpecManager": {"include_local": False},
        "ServerApp": {"jpserver_extensions": {"jupyter_hpc": True}},
    }))
    (config / "jupyter_server_config.py").write_text(PROBE)

    server = Server(tmp_path, "--ServerApp.kernel_spec_manager_class=jupyter_hpc.kernelspecs.RemoteKernelSpecManager")
    try:
        started = time.monotonic()
        first = server.api("GET", "kernelspecs")
        took = time.monotonic() - started
        assert first.status_code == 200
        assert took < 0.1, f"the first /api/kernelspecs took {took * 1000:.0f} ms with a hung site"

        # The extension's wait for the first lists: the good site's arrive, the hung one's do not.
        waited = requests.get(f"http://127.0.0.1:{server.port}/jupyter-hpc/api/kernelspecs/first?timeout=20",
                              headers={"Authorization": f"token {server.token}"}, timeout=60).json()
        listed = server.api("GET", "kernelspecs").json()["kernelspecs"]
        assert any(name.startswith("cori-") for name in listed), listed
        assert not any(name.startswith("hung-") for name in listed)
        assert waited["complete"] is False or "Cannot list the kernelspecs of site hung" in server.log

        lag = json.loads(Path(probe_file).read_text())
        print(f"first /api/kernelspecs {took * 1000:.1f} ms; loop's longest stall over {lag['samples']} "
              f"turns of the server's start: {lag['max_lag'] * 1000:.1f} ms")
        assert lag["samples"] > 100
        assert lag["max_lag"] < 0.05, lag
    finally:
        server.stop()
