"""The demo's embedded login node, against asyncssh's client and our own provisioner."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import asyncssh
import jupyter_client
import pytest

from jupyter_hpc.demo.login_node import LoginNode


@pytest.fixture
async def node(tmp_path):
    async with LoginNode(tmp_path / "login-node") as node:
        yield node


def connect(node: LoginNode, **options):
    options.setdefault("username", node.username)
    options.setdefault("client_keys", [str(node.client_key_path)])
    return asyncssh.connect(node.host, node.port, known_hosts=str(node.known_hosts_path),
                            agent_path=None, **options)


async def test_keys_are_private_and_host_key_pinned(node):
    assert os.stat(node.state_dir).st_mode & 0o777 == 0o700
    for path in (node.host_key_path, node.client_key_path):
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert node.known_hosts_path.read_text().startswith(f"[127.0.0.1]:{node.port} ssh-ed25519 ")


async def test_exec_runs_through_the_login_shell_like_sshd(node):
    async with connect(node) as conn:
        result = await conn.run('echo "$SSH_CONNECTION|$SSH_CLIENT|$USER|$HOME"; echo oops >&2; exit 3')
        local_port = conn.get_extra_info("sockname")[1]
    ssh_connection, ssh_client, user, home = result.stdout.strip().split("|")
    assert ssh_connection == f"127.0.0.1 {local_port} 127.0.0.1 {node.port}"
    assert ssh_client == f"127.0.0.1 {local_port} {node.port}"
    assert (user, home) == (node.username, node.user.pw_dir)
    assert result.stderr == "oops\n"
    assert result.exit_status == 3


async def test_stdin_eof_and_channel_close_reach_the_command(node, tmp_path):
    marker = tmp_path / "saw-eof"
    async with connect(node) as conn:
        result = await conn.run("cat; echo end", input="line\n")
        assert result.stdout == "line\nend\n"
        # No EOF, just the channel closing: the command must still read EOF (the launcher's
        # cue to end its kernel).
        process = await conn.create_process(f"{sys.executable} -c 'import sys; sys.stdin.read(); open(sys.argv[1], \"w\")' {marker}")
        await asyncio.sleep(0.3)
        assert not marker.exists()
        process.close()
        for _ in range(100):
            if marker.exists():
                break
            await asyncio.sleep(0.05)
    assert marker.exists()


async def test_killing_signal_is_reported(node):
    async with connect(node) as conn:
        result = await conn.run("kill -TERM $$")
    assert result.exit_signal[0] == "TERM"


async def test_forwarding_policy(tmp_path, node):
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(echo, "127.0.0.1", 0)
    unix_path = str(tmp_path / "echo.sock")
    unix = await asyncio.start_unix_server(echo, unix_path)
    async with tcp, unix, connect(node) as conn:
        reader, writer = await conn.open_connection("127.0.0.1", tcp.sockets[0].getsockname()[1])
        writer.write(b"tcp")
        writer.write_eof()
        assert await reader.read() == b"tcp"
        reader, writer = await conn.open_unix_connection(unix_path)
        writer.write(b"unix")
        writer.write_eof()
        assert await reader.read() == b"unix"
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.open_connection("192.0.2.1", 22)
        assert refused.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
        # The provisioner's probe: "allowed" reads as connect-failed on a missing path.
        with pytest.raises(asyncssh.ChannelOpenError) as missing:
            await conn.open_unix_connection("/nonexistent/jupyter-hpc-probe")
        assert missing.value.code == asyncssh.OPEN_CONNECT_FAILED


async def test_stream_local_can_be_refused_like_openssh(tmp_path):
    async with LoginNode(tmp_path / "n", allow_stream_local=False) as node, connect(node) as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.open_unix_connection("/nonexistent/jupyter-hpc-probe")
    assert refused.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED


async def test_sftp(node, tmp_path):
    async with connect(node) as conn, conn.start_sftp_client() as sftp:
        async with sftp.open(str(tmp_path / "f.txt"), "w") as handle:
            await handle.write("over sftp")
    assert (tmp_path / "f.txt").read_text() == "over sftp"


async def test_only_the_user_with_the_generated_key_gets_in(node):
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(node, username="somebody-else")
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(node, client_keys=[other_key])


async def test_a_home_of_its_own_for_commands_and_sftp(tmp_path):
    home = tmp_path / "cluster-home"
    home.mkdir()
    async with LoginNode(tmp_path / "n", home=home) as node, connect(node) as conn:
        result = await conn.run('echo "$HOME"; pwd', check=True)
        assert result.stdout.split() == [str(home), str(home)]
        async with conn.start_sftp_client() as sftp:
            assert await sftp.realpath(".") == str(home)
            async with sftp.open("notes.txt", "w") as handle:  # relative: in the home, as with OpenSSH
                await handle.write("in the cluster home")
    assert (home / "notes.txt").read_text() == "in the cluster home"


def _certificate(ca, key, principal: str, valid_before: str = "+1h"):
    return ca.generate_user_certificate(key, "test", principals=[principal], valid_before=valid_before)


async def test_a_certificate_from_the_trusted_user_ca_logs_in(tmp_path):
    ca = asyncssh.generate_private_key("ssh-ed25519")
    trusted = ca.export_public_key().decode()
    async with LoginNode(tmp_path / "n", trusted_user_ca_keys=[trusted]) as node:
        key = asyncssh.generate_private_key("ssh-ed25519")
        async with connect(node, client_keys=[(key, _certificate(ca, key, node.username))]) as conn:
            assert (await conn.run("echo in", check=True)).stdout == "in\n"
        for refused in (
            _certificate(ca, key, "somebody-else"),  # another user's certificate
            _certificate(ca, key, node.username, valid_before="-1m"),  # expired
            _certificate(asyncssh.generate_private_key("ssh-ed25519"), key, node.username),  # another CA
        ):
            with pytest.raises(asyncssh.PermissionDenied):
                await connect(node, client_keys=[(key, refused)])


async def test_close_ends_running_commands(tmp_path):
    node = await LoginNode(tmp_path / "n", grace=1).start()
    conn = await connect(node)
    process = await conn.create_process("trap '' TERM; echo started; sleep 300 & wait")
    assert await process.stdout.readline() == "started\n"
    (command,) = node._commands
    await node.close()
    assert command.returncode is not None
    assert live_members(command.pid) == []


def live_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies (which init reaps in its time)."""
    members = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            text = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(name))
    return members


@pytest.fixture
def threaded_node(tmp_path):
    """A login node in a loop of its own, as a blocking KernelManager needs it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    node = asyncio.run_coroutine_threadsafe(LoginNode(tmp_path / "n").start(), loop).result(10)
    yield node
    asyncio.run_coroutine_threadsafe(node.close(), loop).result(20)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_provisioner_kernel_through_the_login_node(threaded_node, kernelspecs):
    name = kernelspecs("via-login-node", threaded_node.provisioner_config(sys.executable))
    km = jupyter_client.KernelManager(kernel_name=name)
    outputs: list[dict] = []
    km.start_kernel()
    try:
        client = km.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        reply = client.execute_interactive("import os; print(os.environ['SSH_CONNECTION'])", timeout=30,
                                           output_hook=lambda msg: outputs.append(msg))
        assert reply["content"]["status"] == "ok"
        client.stop_channels()
    finally:
        km.shutdown_kernel()
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    assert text.strip().endswith(f"127.0.0.1 {threaded_node.port}")

