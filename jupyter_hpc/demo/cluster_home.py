"""The demo cluster's home and scratch, holding the kernelspecs a scientist would have there.

A user of a real cluster drops kernelspecs into their remote home (a conda env, a module
stack) and jupyter-hpc discovers them. The demo's home holds two, in IPython's legacy
``~/.ipython/kernels`` as many clusters' users still have them: a plain "Python 3" and a
"myenv" with a setup line, both with ipykernel's own logo, which discovery, the launcher and the kernel
start treat exactly as they would on a cluster. Both run the demo's own python (the one
cluster-side python this machine is known to have with ipykernel).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from .login_node import make_private_dir

#: Not "python3": that name is the cluster python's own ipykernel spec (in its prefix),
#: which jupyter_client's order puts before ~/.ipython/kernels and would shadow this one.
PLAIN = "python"
MYENV = "myenv"
#: What the myenv kernelspec's setup line sets, so that a cell can tell its environment.
MYENV_MARKER = ("MYENV", "1")


def ipykernel_logos() -> list[Path]:
    """ipykernel's logo files (``logo-32x32.png``, ``logo-64x64.png``, ``logo-svg.svg``), as its
    own ``python3`` kernelspec carries them, found without importing ipykernel."""
    spec = importlib.util.find_spec("ipykernel")
    if spec is None or not spec.submodule_search_locations:
        return []
    resources = Path(next(iter(spec.submodule_search_locations))) / "resources"
    return sorted(resources.glob("logo-*")) if resources.is_dir() else []


def kernel_json(python: str, display_name: str, **extra: object) -> dict:
    return {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
        "interrupt_mode": "signal",
        **extra,
    }


def make_cluster(root: Path, python: str) -> tuple[Path, Path]:
    """Create ``root/home`` (with the two kernelspecs) and ``root/scratch``; return both."""
    home = make_private_dir(root / "home")
    scratch = make_private_dir(root / "scratch")
    kernels = home / ".ipython" / "kernels"
    plain = kernels / PLAIN
    plain.mkdir(parents=True)
    (plain / "kernel.json").write_text(json.dumps(kernel_json(python, "Python 3"), indent=1))
    myenv = kernels / MYENV
    myenv.mkdir()
    name, value = MYENV_MARKER
    (myenv / "kernel.json").write_text(json.dumps(kernel_json(
        python, "myenv", env={"PYTHONNOUSERSITE": "1"},
        metadata={"jupyter_hpc": {"setup": [f"export {name}={value}"]}},
    ), indent=1))
    for logo in ipykernel_logos():  # Python's logo on both tiles, not JupyterLab's letter
        for kernel in (plain, myenv):
            shutil.copyfile(logo, kernel / logo.name)
    (scratch / "README.txt").write_text("Scratch: the demo cluster's fast, purged file system.\n")
    return home, scratch
