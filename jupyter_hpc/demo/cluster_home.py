"""The demo cluster's home and scratch, holding the kernelspecs a scientist would have there.

A user of a real cluster drops kernelspecs into their remote home (a conda env, a module
stack) and jupyter-hpc discovers them. The demo's home holds two, in IPython's legacy
``~/.ipython/kernels`` as many clusters' users still have them: a plain "Python 3" and a
"myenv" with its own logo and a setup line, which discovery, the launcher and the kernel
start treat exactly as they would on a cluster. Both run the demo's own python (the one
cluster-side python this machine is known to have with ipykernel).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from .login_node import make_private_dir

#: Not "python3": that name is the cluster python's own ipykernel spec (in its prefix),
#: which jupyter_client's order puts before ~/.ipython/kernels and would shadow this one.
PLAIN = "python"
MYENV = "myenv"
#: What the myenv kernelspec's setup line sets, so that a cell can tell its environment.
MYENV_MARKER = ("MYENV", "1")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small solid-colour PNG, written with zlib alone (the demo needs no imaging library)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


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
    (myenv / "logo-64x64.png").write_bytes(png(64, 64, (0x2E, 0x7D, 0x32)))
    (myenv / "logo-32x32.png").write_bytes(png(32, 32, (0x2E, 0x7D, 0x32)))
    (scratch / "README.txt").write_text("Scratch: the demo cluster's fast, purged file system.\n")
    return home, scratch
