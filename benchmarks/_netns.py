"""A benchmark sshd in a network namespace of its own, reached over a veth pair.

The peers decide by address whether a host is "local" (gateway_provisioners'
DistributedProvisioner skips SSH for a local address), so every remote variant of
``kernel_start.py`` logs in to ``NS_ADDR`` (10.231.0.2), an address only this namespace holds;
the host side of the pair is ``HOST_ADDR`` (10.231.0.1). sshd listens on port 22 of the
namespace (a namespace has its own port space), so OpenSSH, asyncssh and paramiko all find the
host key under the plain address in ``known_hosts``. Only addresses created here are used;
everything is removed by ``close()``.

The kernels the sshd starts live in the namespace too (network only: same file system, same
users, same processes as the host), so a kernel's TCP ports on 127.0.0.1 are the namespace's
loopback, reached from the host only through SSH, as on a real remote host.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from testbed.sshd import SSHD, SSHDaemon, wait_for_port  # noqa: F401 - tests/ is on sys.path via _bed

HOST_ADDR = "10.231.0.1"
NS_ADDR = "10.231.0.2"
PREFIX = 30


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Namespace:
    """``ip netns add``, a veth pair with one end moved in, addresses, links up."""

    def __init__(self, name: str | None = None) -> None:
        pid = os.getpid()
        self.name = name or f"jhpcbench{pid}"
        self.host_if = f"jhb{pid % 100000}h"
        self.ns_if = f"jhb{pid % 100000}n"
        self.created = False

    def create(self) -> "Namespace":
        existing = _ip("-br", "addr").stdout
        if f"{HOST_ADDR}/" in existing:
            raise RuntimeError(f"{HOST_ADDR} is already on an interface here (another benchmark run?)")
        _ip("netns", "add", self.name)
        self.created = True
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
            _ip("link", "set", self.ns_if, "netns", self.name)
            _ip("addr", "add", f"{HOST_ADDR}/{PREFIX}", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self.exec_ip("addr", "add", f"{NS_ADDR}/{PREFIX}", "dev", self.ns_if)
            self.exec_ip("link", "set", self.ns_if, "up")
            self.exec_ip("link", "set", "lo", "up")  # the kernels' 127.0.0.1 inside
        except BaseException:
            self.close()
            raise
        return self

    def exec_ip(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def close(self) -> None:
        if self.created:
            _ip("link", "del", self.host_if, check=False)  # removes its peer too
            _ip("netns", "del", self.name, check=False)
            self.created = False


class NamespacedSSHD(SSHDaemon):
    """tests/testbed's SSHDaemon, started by ``ip netns exec`` on the namespace's address (port 22
    unless given)."""

    namespace: Namespace | None = None

    def start(self) -> "NamespacedSSHD":
        assert self.namespace is not None
        os.makedirs("/run/sshd", exist_ok=True)
        self.port = self.port or 22
        config = self.root / "sshd_config"
        config.write_text(self.config_text())
        # Port 22: the plain address is the known_hosts key (OpenSSH, asyncssh and paramiko alike).
        self.known_hosts.write_text(f"{self.host} {self.host_public_key}\n[{self.host}]:{self.port} {self.host_public_key}\n")
        subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
        self.process = subprocess.Popen(
            self.namespace.wrap([SSHD, "-D", "-f", str(config.resolve()), "-E", str(self.log.resolve())])
        )
        wait_for_port(self.host, self.port)
        return self


def namespaced_sshd(root: Path, users: list[str], namespace: Namespace, port: int = 22, **kw) -> NamespacedSSHD:
    daemon = NamespacedSSHD(root, users=users, host=NS_ADDR, port=port, **kw)
    daemon.namespace = namespace
    return daemon.start()
