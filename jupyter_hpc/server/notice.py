"""A kernel's first words to the user: a notice shown as the first output of its first cell.

Some things about a kernel the user should read where they look, in the notebook, not in the
server's log: with several sites in one server, a notebook in Cori's folder may start a
Perlmutter kernel, which cannot work in Cori's folder and starts in the home on Perlmutter
instead ("this notebook's folder is on Cori; the kernel runs on Perlmutter, in your home
there"). The kernel manager puts such a text on the kernel's manager (``km.hpc_notice``);
this websocket connection, jupyter_server's own with one addition, sends it as a ``stderr``
stream message answering the first ``execute_request`` it carries to that kernel, so that it
is the first line of that cell's output. Any kernel language, no code run in the kernel.

``c.ServerApp.kernel_websocket_connection_class = "jupyter_hpc.server.notice.NoticeWebsocketConnection"``
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.services.kernels.connection.base import deserialize_binary_message, deserialize_msg_from_ws_v1
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoticeWebsocketConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket, which also delivers the kernel's notice once."""

    def handle_incoming_message(self, incoming_msg: Any) -> None:
        super().handle_incoming_message(incoming_msg)
        notice = getattr(self.kernel_manager, "hpc_notice", None)
        if not notice or not self.channels:
            return
        header = self._execute_header(incoming_msg)
        if header is not None:
            self.kernel_manager.hpc_notice = None  # once per kernel, whichever tab runs first
            self.write_stderr(notice, header)

    def _execute_header(self, incoming_msg: Any) -> dict[str, Any] | None:
        """The header of an ``execute_request`` on the shell channel, else None."""
        try:
            if self.subprotocol == "v1.kernel.websocket.jupyter.org":
                channel, msg_list = deserialize_msg_from_ws_v1(incoming_msg)
                header = self.session.unpack(msg_list[0])
            else:
                msg = (deserialize_binary_message(incoming_msg) if isinstance(incoming_msg, bytes)
                       else json.loads(incoming_msg))
                channel, header = msg.get("channel"), msg.get("header")
        except Exception:  # not ours to judge: jupyter_server has handled (or refused) it
            return None
        if channel not in (None, "shell") or not isinstance(header, dict):
            return None
        return header if header.get("msg_type") == "execute_request" else None
