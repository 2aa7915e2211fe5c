"""A notebook opened from the cluster's files runs its kernel in the notebook's folder there."""

from __future__ import annotations

from contents_bed import files_sshd, files_user, start_server  # noqa: F401
from demo_helpers import KernelSocket


def test_kernel_starts_in_the_notebooks_folder_on_the_cluster(tmp_path, files_sshd, files_user, kernelspecs,
                                                              remote_python):
    run = files_user.folder(files_user.scratch)
    files_user.run("mkdir", str(run / "run1"))
    spec = kernelspecs("hpc-files", files_sshd.provisioner_config(files_user.name, remote_python=remote_python))
    server = start_server(tmp_path, files_sshd, files_user)
    try:
        path = f"scratch/{run.name}/run1/analysis.ipynb"
        server.api("POST", f"contents/scratch/{run.name}/run1", json={"type": "notebook"})
        server.api("PATCH", f"contents/scratch/{run.name}/run1/Untitled.ipynb", json={"path": path})
        session = server.api("POST", "sessions", json={"path": path, "type": "notebook", "name": "analysis.ipynb",
                                                      "kernel": {"name": spec}}).json()
        ws = KernelSocket(server, session["kernel"]["id"])
        try:
            ws.wait_ready()
            answer = ws.execute("import os; print(os.getcwd())", timeout=60)
        finally:
            ws.close()
        assert answer["error"] is None, answer
        assert answer["stdout"].strip() == str(run / "run1")
        server.api("DELETE", f"sessions/{session['id']}")
    finally:
        server.stop()
        files_user.run("rm", "-rf", str(run))
