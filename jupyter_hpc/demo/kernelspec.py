"""The demo's "Cori (demo)" kernelspec: our ``hpc-ssh`` provisioner pointed at the login node.

It is an ordinary kernelspec, the same a site's admin would write for a real cluster: the
remote python runs the kernel, the provisioner logs in with a key and checks the host key
against a pinned ``known_hosts``. Only the values differ: the login node is the embedded one
and the "remote" python is the one running the demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .login_node import LoginNode

KERNEL_NAME = "cori-demo"
DISPLAY_NAME = "Cori (demo)"


def kernelspec(node: LoginNode, remote_python: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The kernel.json body; ``env`` goes to the remote kernel through the provisioner."""
    config = node.provisioner_config(remote_python)
    if env:
        config["env"] = dict(env)
    return {
        "argv": [remote_python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"kernel_provisioner": {"provisioner_name": "hpc-ssh", "config": config}},
    }


def write_kernelspec(jupyter_path: Path, node: LoginNode, remote_python: str,
                     env: dict[str, str] | None = None) -> Path:
    """Write ``<jupyter_path>/kernels/cori-demo/kernel.json``; return the spec's directory."""
    directory = jupyter_path / "kernels" / KERNEL_NAME
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kernel.json").write_text(json.dumps(kernelspec(node, remote_python, env), indent=1))
    return directory
