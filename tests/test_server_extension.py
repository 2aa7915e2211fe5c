"""The server extension enabled under both of its names loads once."""

from __future__ import annotations

from server_helpers import Server


def test_enabled_as_jupyter_hpc_and_jupyter_hpc_server_it_loads_once(tmp_path, kernelspecs):
    # The installed config enables "jupyter_hpc"; a hub's server (HPCSpawner) adds "jupyter_hpc.server".
    server = Server(tmp_path, "--ServerApp.jpserver_extensions=jupyter_hpc.server=True")
    try:
        assert server.api("GET", "../jupyter-hpc/api/slurm/kernels").status_code == 200
        assert server.log.count("jupyter_hpc: REST handlers under") == 1, server.log
    finally:
        server.stop()
