"""A kernel in a container: the argv of a kernelspec that starts one (``jupyter hpc kernel create
--container RUNTIME:IMAGE``).

The remote launcher gives the argv ``{kernel_dir}``, the kernel's own 0700 directory holding
its connection file and Unix sockets (:func:`jupyter_hpc.launcher.remote_launcher.kernel_command`).
The container bind-mounts that directory at the same path, so the file and the sockets it
names are where the kernel inside looks, and the forwarded channels reach it. The container
runs as the user (podman's ``--userns=keep-id``; Apptainer and Shifter always do), so its
sockets stay the user's alone.
"""

from __future__ import annotations

from collections.abc import Sequence

KERNEL = ["-m", "ipykernel_launcher", "-f", "{connection_file}"]


def podman(command: str, image: str, python: str, extra: Sequence[str]) -> list[str]:
    # --init: the kernel is not the container's PID 1, which ignores SIGTERM and SIGINT
    # without a handler; podman passes the launcher's signals on (--sig-proxy, its default).
    return [command, "run", "--rm", "--init", "--network=host", "--userns=keep-id",
            "--volume={kernel_dir}:{kernel_dir}", *extra, image, python, *KERNEL]


RUNTIMES = {
    "podman": lambda image, python, extra: podman("podman", image, python, extra),
    "podman-hpc": lambda image, python, extra: podman("podman-hpc", image, python, extra),
    "apptainer": lambda image, python, extra: ["apptainer", "exec", "--bind", "{kernel_dir}", *extra, image, python, *KERNEL],
    "singularity": lambda image, python, extra: ["singularity", "exec", "--bind", "{kernel_dir}", *extra, image, python, *KERNEL],
    "shifter": lambda image, python, extra: ["shifter", f"--image={image}", "--volume={kernel_dir}:{kernel_dir}", *extra,
                                             python, *KERNEL],
}


def container_argv(container: str, python: str = "python3", extra: Sequence[str] = ()) -> list[str]:
    """The argv for ``RUNTIME:IMAGE`` (``podman:docker.io/jupyter/base``, ``apptainer:~/k.sif``,
    ``shifter:docker:jupyter/base``); ``python`` is the one inside the image, with ipykernel.
    ValueError names the runtimes known."""
    runtime, _, image = container.partition(":")
    if runtime not in RUNTIMES or not image:
        raise ValueError(f"--container {container!r}: give RUNTIME:IMAGE, RUNTIME one of {', '.join(RUNTIMES)}")
    return RUNTIMES[runtime](image, python, list(extra))
