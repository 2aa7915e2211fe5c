"""Where the magics' commands run: here (a kernel on the cluster) or on a site over SSH.

Both runners take argv, never a shell string. :class:`SiteRunner` imports the SSH layer (and
jupyter_client, to read the kernelspec) only when it is built, so the magics alone need
IPython and pandas.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import HPCError
from ..errors import SlurmError


@dataclasses.dataclass
class Completed:
    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str


class LocalRunner:
    """Runs commands on this machine, e.g. in a kernel on a login node."""

    where = ""

    def run(self, argv: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Completed:
        full_env = {**os.environ, **env} if env else None
        try:
            done = subprocess.run(list(argv), input=input, env=full_env, capture_output=True, text=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise SlurmError.from_command(argv, None, f"{argv[0]}: command not found on this machine. Is SLURM "
                             "installed here, or did you mean to run it on a site (--site NAME)?") from None
        return Completed(list(argv), done.returncode, done.stdout, done.stderr)

    def __repr__(self) -> str:
        return "LocalRunner()"


class SiteRunner:
    """Runs commands on a site's login node over the shared SSH connection pool."""

    def __init__(self, target: Any, name: str) -> None:
        self.target = target
        self.where = name

    def run(self, argv: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None,
            timeout: float | None = None) -> Completed:
        from ..ssh import get_pool, run_in_ssh_loop_sync

        command = list(argv)
        if env:  # the remote shell sees argv quoted once; `env` sets variables without a shell
            command = ["env", *(f"{key}={value}" for key, value in env.items()), *command]

        async def go():
            conn = await get_pool().connect(self.target)
            return await conn.run(command, input=input, check=False, timeout=timeout)

        result = run_in_ssh_loop_sync(go())
        return Completed(list(argv), result.exit_status, str(result.stdout or ""), str(result.stderr or ""))

    def __repr__(self) -> str:
        return f"SiteRunner({self.where!r})"


def site_from_kernelspec(name: str) -> SiteRunner:
    """A site given as the name of an ``hpc-ssh`` kernelspec: its provisioner config holds
    host, port, username, client_keys, known_hosts and jump_host."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise HPCError(f"No site named {name!r}: a site is, for now, the name of an hpc-ssh "
                       "kernelspec (see `jupyter kernelspec list`).") from None
    provisioner = (spec.metadata or {}).get("kernel_provisioner") or {}
    if provisioner.get("provisioner_name") != "hpc-ssh":
        raise HPCError(f"The kernelspec {name!r} does not use the hpc-ssh provisioner, so it names no site.")
    config = provisioner.get("config") or {}
    if not config.get("host"):
        raise HPCError(f"The kernelspec {name!r} has no metadata.kernel_provisioner.config.host.")
    from ..ssh import SSHTarget

    target = SSHTarget(
        host=config["host"],
        port=config.get("port"),
        username=config.get("username"),
        client_keys=tuple(config.get("client_keys") or ()),
        known_hosts=config.get("known_hosts"),
        jump_host=config.get("jump_host"),
    )
    return SiteRunner(target, name)


def check(done: Completed, where: str = "") -> Completed:
    if done.returncode != 0:
        raise SlurmError.from_command(done.argv, done.returncode, done.stderr, where)
    return done
