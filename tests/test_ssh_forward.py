"""Issue 30: the local forwards of a kernel's channels (``jupyter_hpc.ssh.forward``) through the real sshd.

A stream from the far side reaches the local client intact and in order, in fewer writes to the
local socket than the SSH packets it came in (the packets of one read go out together); a
client that falls behind pauses the channel instead of losing bytes; the client's EOF reaches
the far side while the far side can still answer (half-close).
"""

from __future__ import annotations

import asyncio
import socket

import jupyter_hpc.ssh.forward as forward
from jupyter_hpc.ssh import SSHTarget, get_pool, run_in_ssh_loop_sync

STREAM = bytes(range(256)) * (12 * 1024 * 1024 // 256)  # 12 MiB: beyond a window (2 MiB) and the local buffer


def test_a_stream_arrives_intact_in_fewer_writes_pauses_for_a_slow_client_and_half_closes(
    sshd, kernel_user, tmp_path, monkeypatch
):
    config = sshd.provisioner_config(kernel_user.pw_name)
    target = SSHTarget(host=config["host"], port=config["port"], username=config["username"],
                       client_keys=tuple(config["client_keys"]), known_hosts=config["known_hosts"])
    counts = {"packets": 0, "writes": 0, "paused": 0, "send_buffer": 0}
    deliver, flush, pause = forward._ChannelEnd.data_received, forward._ChannelEnd._flush, forward._LocalEnd.pause_writing

    def data_received(self, data, datatype=None):
        counts["packets"] += 1
        deliver(self, data, datatype)

    def counted_flush(self):
        counts["writes"] += bool(self._pending)
        flush(self)

    def pause_writing(self):
        counts["paused"] += 1
        counts["send_buffer"] = self.transport.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        pause(self)

    monkeypatch.setattr(forward._ChannelEnd, "data_received", data_received)
    monkeypatch.setattr(forward._ChannelEnd, "_flush", counted_flush)
    monkeypatch.setattr(forward._LocalEnd, "pause_writing", pause_writing)

    async def far_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(STREAM)
        await writer.drain()
        last_words = await reader.read()  # until the client's EOF
        writer.write(b"heard: " + last_words)
        await writer.drain()
        writer.close()

    async def scenario() -> tuple[bytes, bytes]:
        server = await asyncio.start_server(far_side, "127.0.0.1", 0)  # sshd connects to it
        connection = await get_pool().connect(target)
        path = str(tmp_path / "forwarded")
        listener = await connection.forward_path_to_port(path, server.sockets[0].getsockname()[1])
        try:
            # A client that reads nothing for a while (a raw socket: a StreamReader in this loop
            # would keep reading): the local socket's buffer fills, then the transport's window.
            loop = asyncio.get_running_loop()
            with socket.socket(socket.AF_UNIX) as client:
                client.setblocking(False)
                await loop.sock_connect(client, path)
                await loop.sock_sendall(client, b"go\n")
                await asyncio.sleep(1.5)  # behind: sshd sends a window, the local buffers fill
                received = bytearray()
                while len(received) < len(STREAM):
                    received += await loop.sock_recv(client, 1 << 20)
                await loop.sock_sendall(client, b"bye")
                client.shutdown(socket.SHUT_WR)
                answer = bytearray()
                while chunk := await loop.sock_recv(client, 1 << 16):
                    answer += chunk
            return bytes(received), bytes(answer)
        finally:
            listener.close()
            server.close()

    received, answer = run_in_ssh_loop_sync(scenario(), timeout=120)
    assert received == STREAM
    assert answer == b"heard: bye"  # the far side read our EOF, then still answered
    assert counts["paused"] >= 1, counts  # the slow client paused the channel
    assert 0 < counts["writes"] < counts["packets"], counts  # packets of one read written together
    # The local Unix socket holds a window (as far as the kernel allows; Linux doubles the value
    # set), so a stream does not cost the loop a turn per partial send every ~208 KiB.
    wmem_max = int(open("/proc/sys/net/core/wmem_max").read())
    assert counts["send_buffer"] >= 2 * min(forward.UNIX_SEND_BUFFER, wmem_max), counts
