"""The server's ends of a remote kernel's five channels, stable across restarts and reconnects.

jupyter_client keeps its clients on the same endpoints across a restart, and a reconnection
must not move them either: the first forwards pick ephemeral 127.0.0.1 ports (or socket
paths in a 0700 directory, where the server's host is shared), and every later forward
reopens exactly those. Listeners are asyncssh's, so they live in the SSH loop.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from ..launcher.remote_launcher import CHANNELS
from ..ssh import SiteConnection


class LocalEndpoints:
    """Where the manager's clients connect: ``transport`` is 'tcp' or 'ipc' (Unix sockets)."""

    def __init__(self, transport: str, ipc_dir: str) -> None:
        self.transport = transport
        self.ipc_dir = ipc_dir
        self.ports: dict[str, Any] | None = None  # channel -> local port, or socket path
        self._listeners: list = []

    @property
    def ipc_prefix(self) -> str:
        return os.path.join(self.ipc_dir, "k")

    async def open(self, connection: SiteConnection, answer: dict) -> None:
        """Forward each channel to the kernel the launcher ``answer`` describes (SSH loop)."""
        self.close()
        if self.transport == "ipc":
            os.makedirs(self.ipc_dir, mode=0o700, exist_ok=True)
            os.chmod(self.ipc_dir, 0o700)
        previous = self.ports or {}
        listeners, ports = [], {}
        try:
            for number, channel in enumerate(CHANNELS, start=1):
                remote_port = int(answer["ports"][channel])
                remote_path = f"{answer['ip']}-{remote_port}"
                remote_is_ipc = answer["transport"] == "ipc"
                if self.transport == "ipc":
                    local_path = f"{self.ipc_prefix}-{number}"
                    if os.path.exists(local_path):
                        os.unlink(local_path)
                    listener = await (
                        connection.forward_path_to_path(local_path, remote_path) if remote_is_ipc
                        else connection.forward_path_to_port(local_path, remote_port, answer["ip"])
                    )
                    ports[channel] = local_path
                else:
                    local_port = int(previous.get(channel) or 0)
                    listener = await (
                        connection.forward_port_to_path(remote_path, local_port) if remote_is_ipc
                        else connection.forward_port(remote_port, local_port, answer["ip"])
                    )
                    ports[channel] = listener.get_port()
                listeners.append(listener)
        except BaseException:
            for listener in listeners:
                listener.close()
            raise
        self._listeners, self.ports = listeners, ports

    def connection_info(self, secrets: dict[str, Any], kernel_name: str) -> dict[str, Any]:
        """jupyter_client's connection info for these endpoints, with the session's secrets."""
        info: dict[str, Any] = dict(secrets, kernel_name=kernel_name)
        if self.transport == "ipc":
            info.update(transport="ipc", ip=self.ipc_prefix)
            info.update({f"{channel}_port": number for number, channel in enumerate(CHANNELS, start=1)})
        else:
            info.update(transport="tcp", ip="127.0.0.1")
            info.update({f"{channel}_port": (self.ports or {})[channel] for channel in CHANNELS})
        return info

    def close(self) -> None:
        """Stop listening; the endpoints stay reserved for the next :meth:`open`."""
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener.close()

    def remove(self) -> None:
        """Forget the endpoints for good (the kernel is shut down, not restarted)."""
        self.close()
        self.ports = None
        if self.transport == "ipc":
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
