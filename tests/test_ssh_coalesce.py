"""Issue 30: a pooled connection sends a data packet and the ignore packet before it in one send.

asyncssh writes an SSH_MSG_IGNORE packet before every encrypted packet; uncoalesced, a forwarded
ZMQ message costs two sends (two TCP segments, two wake-ups of sshd). The real sshd is on the
other end, and the bytes must arrive intact and in order however they are grouped.
"""

from __future__ import annotations

from jupyter_hpc.ssh import SSHTarget, get_pool, run_in_ssh_loop_sync
from jupyter_hpc.ssh.coalesce import CoalescingTransport


def test_a_packet_and_its_ignore_packet_leave_in_one_send_and_arrive_intact(sshd, kernel_user):
    config = sshd.provisioner_config(kernel_user.pw_name)
    target = SSHTarget(host=config["host"], port=config["port"], username=config["username"],
                       client_keys=tuple(config["client_keys"]), known_hosts=config["known_hosts"])

    async def scenario() -> tuple[list[list[int]], bytes]:
        connection = await get_pool().connect(target)
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
            for n in range(200):  # many writes in one callback: every byte arrives, in order
                process.stdin.write(b"%d," % n)
            process.stdin.write_eof()
            rest = await process.stdout.read()
        finally:
            transport.wrapped = real
            process.close()
        return sent_for_one, echoed + rest

    sent_for_one, echoed = run_in_ssh_loop_sync(scenario(), timeout=60)
    # One send carrying the ignore packet and the data packet (asyncssh writes them apart).
    assert len(sent_for_one) == 1 and len(sent_for_one[0]) == 2, sent_for_one
    assert echoed == b"one message\n" + b"".join(b"%d," % n for n in range(200))
