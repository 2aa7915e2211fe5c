"""Issue 30: a pooled connection sends each data packet alone in one send, with no ignore packet.

asyncssh writes an SSH_MSG_IGNORE packet before every encrypted packet (a countermeasure for CBC
ciphers only); a pooled connection with a modern cipher skips it (``jupyter_hpc.ssh.ignore_packets``),
and where one is written (CBC, or asyncssh's own ``send_packet`` restored, as the control here
does) it leaves in one send with its data packet (``jupyter_hpc.ssh.coalesce``): never two sends,
two TCP segments, two wake-ups of sshd per forwarded ZMQ message. The real sshd is on the other
end, and the bytes must arrive intact and in order however they are grouped.
"""

from __future__ import annotations

from jupyter_hpc.ssh import SSHTarget, get_pool, run_in_ssh_loop_sync
from jupyter_hpc.ssh.coalesce import CoalescingTransport
from jupyter_hpc.ssh.ignore_packets import needs_ignore_packets


def test_a_packet_leaves_alone_in_one_send_or_with_its_ignore_packet_and_arrives_intact(sshd, kernel_user):
    config = sshd.provisioner_config(kernel_user.pw_name)
    target = SSHTarget(host=config["host"], port=config["port"], username=config["username"],
                       client_keys=tuple(config["client_keys"]), known_hosts=config["known_hosts"])

    async def scenario() -> tuple[list[list[int]], list[list[int]], str, bytes]:
        connection = await get_pool().connect(target)
        cipher = connection.conn.get_extra_info("send_cipher")
        transport = connection.conn._transport
        assert isinstance(transport, CoalescingTransport), type(transport)
        _, process = await connection.start(["cat"], encoding=None)
        await process.stdin.drain()
        calls: list[list[int]] = []
        real = transport.wrapped

        class Recorder:  # the socket's transport, noting what each call hands it
            def write(self, data):
                calls.append([len(data)])
                real.write(data)

            def writelines(self, items):
                calls.append([len(item) for item in items])
                real.writelines(items)

            def __getattr__(self, name):
                return getattr(real, name)

        transport.wrapped = Recorder()
        try:
            process.stdin.write(b"one message\n")
            echoed = await process.stdout.readline()
            sent_for_one = list(calls)
            # Control: asyncssh's own send_packet again (as before issue 30), ignore packets included.
            skipping = connection.conn.__dict__.pop("send_packet")
            calls.clear()
            process.stdin.write(b"two message\n")
            echoed += await process.stdout.readline()
            sent_with_ignore = list(calls)
            connection.conn.send_packet = skipping
            for n in range(200):  # many writes in one callback: every byte arrives, in order
                process.stdin.write(b"%d," % n)
            process.stdin.write_eof()
            rest = await process.stdout.read()
        finally:
            transport.wrapped = real
            process.close()
        return sent_for_one, sent_with_ignore, cipher, echoed + rest

    sent_for_one, sent_with_ignore, cipher, echoed = run_in_ssh_loop_sync(scenario(), timeout=60)
    assert not needs_ignore_packets(cipher), cipher  # what asyncssh and sshd negotiate here
    # One send of one packet: the data, no ignore packet before it.
    assert len(sent_for_one) == 1 and len(sent_for_one[0]) == 1, sent_for_one
    # With asyncssh's own send_packet: the ignore packet and the data packet, still in one send.
    assert len(sent_with_ignore) == 1 and len(sent_with_ignore[0]) == 2, sent_with_ignore
    assert echoed == b"one message\ntwo message\n" + b"".join(b"%d," % n for n in range(200))


def test_only_cbc_ciphers_keep_the_ignore_packets():
    assert needs_ignore_packets("aes128-cbc") and needs_ignore_packets("3des-cbc") and needs_ignore_packets(None)
    for cipher in ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-ctr"):
        assert not needs_ignore_packets(cipher), cipher
