#!/usr/bin/env python
"""Execute round trip and iopub throughput: a local kernel vs every way hpc-ssh reaches one.

All kernels run side by side in one run, against the same sshd and the same remote ipykernel
(a venv python run by the test user), and are measured in interleaved blocks so that the
machine's noise falls on every variant alike:

* ``local``           LocalProvisioner, TCP on 127.0.0.1: the floor.
* ``hpc-ssh, local TCP``  remote ipc (Unix sockets), local TCP ports, asyncssh forwards: the
                      default where the client is not jupyter_server (scripts, this benchmark).
* ``hpc-ssh, local ipc``  ``local_transport='ipc'``: Unix sockets on the server's side too, with
                      the SSH layer in its own thread (``JUPYTER_HPC_SSH_LOOP=thread``).
* ``local, async client`` and ``hpc-ssh, local ipc, SSH in the client's loop``: jupyter_server's
                      default path. In a second process (the SSH layer is one per process) an
                      asyncio loop, as tornado's, runs ``AsyncKernelManager`` and
                      ``AsyncKernelClient`` (jupyter_server's classes) with the SSH layer adopted
                      into that same loop (``jupyter_hpc.ssh.loop.adopt_loop``, as the server
                      extension does), local ipc; its local kernel, driven the same way in the
                      same process, is its baseline. The parent asks it for each block in turn,
                      so it is interleaved with the rest. Why not a real jupyter_server over its
                      websocket: the server's own work per message (websocket frames, JSON for
                      the legacy protocol, tornado) would fall on both sides and hide the
                      SSH layer's share; the client's loop sharing its thread with the SSH
                      layer, the part that makes the server's path differ, is kept.
* ``… as before issue 30``  local ipc, SSH in a thread, on a connection of its own as it was
                      before issue 30: asyncssh's own forwards (``jupyter_hpc.ssh.forward``
                      not used: each SSH packet a write of its own to the local socket), an
                      ignore packet before each packet (``ignore_packets`` undone), each packet
                      a send of its own (``coalesce`` undone).
* ``hpc-ssh curve``   the fallback where sshd says ``AllowStreamLocalForwarding no``:
                      remote TCP loopback with CurveZMQ, asyncssh forwards.
* ``plain ssh -L``    a plaintext 127.0.0.1 TCP kernel reached through OpenSSH ``ssh -N -L``,
                      the way the peers do it (and what issue 11 refuses to do).
* ``… through OpenSSH ssh -tt -L``  an hpc-ssh kernel (remote Unix sockets, secrets) reached
                      through OpenSSH's C client instead of our asyncssh relay, same sshd.

The relay floor, in the same interleaved blocks: a 300-byte echo on the login node (a Python
echo service on a Unix socket, started over the pooled connection as the bench user), no
kernel and no ZMQ, reached directly, through our forwards (``SiteConnection.forward_*``, the
kernels' own: SSH in a thread, local ipc and TCP; and in the second process with the SSH
layer in the client's loop) and through OpenSSH ``ssh -tt -L``. What a kernel's round trip
adds beyond the echo's is the kernel's traffic on the relay (the iopub messages of each
request, several packets in flight) rather than the relay's fixed cost.

Throughput has two ceilings, same bytes, no kernel: OpenSSH ``ssh host head -c N /dev/zero``
over a ControlMaster (no key exchange in the timing), and the same command over the asyncssh
connection hpc-ssh itself uses (the SSH layer's loop thread, as the forwards run).
Each row's overhead and share are against its own baseline: ``local`` for the rows driven from
this process, ``local, async client`` for the one in the second process.

Usage (as root): ``python benchmarks/transport.py [--quick] [--requests 300] [--mb 100]``.
Times are wall-clock ``perf_counter`` in this process; no timed assertions anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bed import Bed, quiet_logs, summarize, table  # noqa: E402

CHUNKS_KIB = "64,1024"  # the writes a cell makes: terminal-sized pieces, and whole MiB prints


# -- one request, one stream ---------------------------------------------------------------


def stream_bytes(msg: dict, msg_id: str) -> int | None:
    """What one iopub message of ``msg_id``'s adds to its stream; None once it says idle."""
    if msg["parent_header"].get("msg_id") != msg_id:
        return 0
    if msg["msg_type"] == "stream":
        return len(msg["content"]["text"])
    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
        return None
    return 0


def drain_until_idle(client, msg_id: str, timeout: float = 60) -> int:
    """Read iopub until ``msg_id``'s idle status; return the stream bytes seen."""
    received = 0
    deadline = time.monotonic() + timeout
    while (more := stream_bytes(client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic())), msg_id)) is not None:
        received += more
    return received


def round_trip(client) -> float:
    """Seconds from sending ``execute('pass')`` to its execute_reply on shell."""
    start = time.perf_counter()
    msg_id = client.execute("pass", store_history=False)
    while True:
        msg = client.get_shell_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - start
    drain_until_idle(client, msg_id)  # untimed: keeps iopub from piling up
    return elapsed


def print_cell(nbytes: int, chunk: int) -> str:
    return (
        "import sys\n"
        f"_chunk = 'x' * {chunk}\n"
        f"for _ in range({nbytes // chunk}):\n"
        "    sys.stdout.write(_chunk)\n"
        "sys.stdout.flush()\n"
    )


def iopub_throughput(client, nbytes: int, chunk: int) -> float:
    """MB/s from sending the printing cell to its idle status, counting received bytes."""
    start = time.perf_counter()
    msg_id = client.execute(print_cell(nbytes, chunk), store_history=False)
    received = drain_until_idle(client, msg_id, timeout=300)
    elapsed = time.perf_counter() - start
    if received != nbytes:
        raise RuntimeError(f"received {received} bytes of {nbytes}")
    return nbytes / elapsed / 1e6


# -- jupyter_server's default path, in a process of its own -------------------------------

LOCAL_ASYNC = "local, async client (jupyter_server's way)"
ADOPTED = "hpc-ssh, local ipc, SSH in the client's loop (jupyter_server's default)"


async def drain_until_idle_async(client, msg_id: str, timeout: float = 60) -> int:
    """:func:`drain_until_idle` for an ``AsyncKernelClient``."""
    received = 0
    deadline = time.monotonic() + timeout
    while (more := stream_bytes(await client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic())), msg_id)) is not None:
        received += more
    return received


async def round_trip_async(client) -> float:
    """:func:`round_trip` for an ``AsyncKernelClient``."""
    start = time.perf_counter()
    msg_id = client.execute("pass", store_history=False)
    while True:
        msg = await client.get_shell_msg(timeout=30)
        if msg["parent_header"].get("msg_id") == msg_id:
            break
    elapsed = time.perf_counter() - start
    await drain_until_idle_async(client, msg_id)
    return elapsed


async def iopub_throughput_async(client, nbytes: int, chunk: int) -> float:
    """:func:`iopub_throughput` for an ``AsyncKernelClient``."""
    start = time.perf_counter()
    msg_id = client.execute(print_cell(nbytes, chunk), store_history=False)
    received = await drain_until_idle_async(client, msg_id, timeout=300)
    elapsed = time.perf_counter() - start
    if received != nbytes:
        raise RuntimeError(f"received {received} bytes of {nbytes}")
    return nbytes / elapsed / 1e6


async def serve_async_clients(kernels: dict[str, str], replies) -> None:
    """The second process: the SSH layer adopted into this asyncio loop (as in a jupyter_server),
    each kernel started with ``AsyncKernelManager``, then the parent's requests answered, one
    JSON line each (``{"op": "rt", "name": …, "n": …}`` or ``{"op": "tp", "name": …, "nbytes": …,
    "chunk": …}``), until stdin ends. The loop keeps running between requests, as a server's does."""
    from jupyter_client import AsyncKernelManager

    from jupyter_hpc.ssh.loop import adopt_loop

    loop = asyncio.get_running_loop()
    if not adopt_loop(loop):
        raise RuntimeError("the SSH layer was already running in a thread of its own")
    managers, clients, echoes = [], {}, {}

    def reply(answer: dict) -> None:
        replies.write(json.dumps(answer) + "\n")
        replies.flush()

    try:
        for name, spec in kernels.items():
            km = AsyncKernelManager(kernel_name=spec)
            managers.append(km)
            await km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            client = km.client()
            client.start_channels()
            await client.wait_for_ready(timeout=60)
            clients[name] = client
            for _ in range(20):
                await round_trip_async(client)
        reply({"ready": list(clients)})
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            request = json.loads(line)
            if request["op"] == "echo_open":
                echoes.update(await open_echoes_in_child(request))
                reply({"names": list(echoes)})
                continue
            if request["name"] in echoes:
                reply({"samples": await echoes[request["name"]].round_trips(request["n"])})
                continue
            client = clients[request["name"]]
            if request["op"] == "rt":
                reply({"samples": [await round_trip_async(client) for _ in range(request["n"])]})
            else:
                reply({"rate": await iopub_throughput_async(client, request["nbytes"], request["chunk"])})
    finally:
        for echo in echoes.values():
            echo.close()
        for client in clients.values():
            client.stop_channels()
        for km in managers:
            await km.shutdown_kernel(now=False)


class AsyncClientProcess:
    """The parent's handle on :func:`serve_async_clients` running in a child python."""

    def __init__(self, kernels: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-async-clients", json.dumps(kernels)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.names = self._read()["ready"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the async clients' process ended (exit status {self.process.wait()}); its errors are above")
        return json.loads(line)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class InThisProcess:
    """A blocking client driven from this process."""

    def __init__(self, client) -> None:
        self.client = client

    def round_trips(self, n: int) -> list[float]:
        return [round_trip(self.client) for _ in range(n)]

    def throughput(self, nbytes: int, chunk: int) -> float:
        return iopub_throughput(self.client, nbytes, chunk)


class InChildProcess:
    """An async client driven in the child process, one request per block."""

    def __init__(self, process: AsyncClientProcess, name: str) -> None:
        self.process, self.name = process, name

    def round_trips(self, n: int) -> list[float]:
        return self.process.ask(op="rt", name=self.name, n=n)["samples"]

    def throughput(self, nbytes: int, chunk: int) -> float:
        return self.process.ask(op="tp", name=self.name, nbytes=nbytes, chunk=chunk)["rate"]


def async_clients_main(kernels_json: str) -> None:
    """Entry of the child process: replies on the original stdout; the rest goes to stderr."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    quiet_logs(False)
    asyncio.run(serve_async_clients(json.loads(kernels_json), replies))


# -- the ceilings -------------------------------------------------------------------------


def openssh_cat(bed: Bed, control: list[str], nbytes: int) -> float:
    """MB/s of OpenSSH ``ssh host head -c N /dev/zero`` (through the master: no handshake)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        bed.ssh_argv(*control) + ["head", "-c", str(nbytes), "/dev/zero"],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    received = 0
    while block := process.stdout.read1(1 << 20):
        received += len(block)
    process.wait()
    elapsed = time.perf_counter() - start
    if received != nbytes:
        raise RuntimeError(f"ssh cat gave {received} bytes of {nbytes}")
    return nbytes / elapsed / 1e6


def bench_target(config: dict):
    """The pooled connection's :class:`SSHTarget` for a provisioner config of the bed's."""
    from jupyter_hpc.ssh import SSHTarget

    return SSHTarget(
        host=config["host"], port=config["port"], username=config["username"],
        client_keys=tuple(config["client_keys"]), known_hosts=config["known_hosts"],
    )


def asyncssh_cat(bed: Bed, nbytes: int) -> tuple[float, str]:
    """MB/s of the same command over hpc-ssh's own pooled asyncssh connection and loop."""
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync

    target = bench_target(bed.ssh_config())

    async def cat() -> tuple[float, str]:
        connection = await get_pool().connect(target)
        start = time.perf_counter()
        _, process = await connection.start(["head", "-c", str(nbytes), "/dev/zero"], encoding=None)
        received = 0
        while block := await process.stdout.read(1 << 20):
            received += len(block)
        await process.wait_closed()
        elapsed = time.perf_counter() - start
        if received != nbytes:
            raise RuntimeError(f"asyncssh cat gave {received} bytes of {nbytes}")
        return nbytes / elapsed / 1e6, connection.conn.get_extra_info("send_cipher") or "?"

    return run_in_ssh_loop_sync(cat())


# -- the relay floor: an echo, no kernel, no ZMQ -------------------------------------------

ECHO_BYTES = 300  # about an execute request or reply
ECHO_DIRECT = "echo, direct (no SSH)"
ECHO_OURS_IPC = "echo through our forward, local ipc, SSH in a thread"
ECHO_OURS_TCP = "echo through our forward, local TCP, SSH in a thread"
ECHO_OPENSSH = "echo through OpenSSH ssh -tt -L (C client), local ipc"
ECHO_DIRECT_ASYNC = "echo, direct, async client"
ECHO_ADOPTED = "echo through our forward, local ipc, SSH in the client's loop"

# Run on the login node as the bench user, over the pooled connection: listens on a Unix socket
# in a fresh 0700 directory, prints its path, echoes every connection until stdin ends.
ECHO_SERVER = r"""
import os, socket, sys, tempfile, threading
directory = tempfile.mkdtemp(prefix="jupyter-hpc-echo-")
path = os.path.join(directory, "echo")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(16)
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
def accept():
    while True:
        threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()
threading.Thread(target=accept, daemon=True).start()
print(path, flush=True)
sys.stdin.read()
os.unlink(path)
os.rmdir(directory)
"""


class EchoClient:
    """A blocking client of the echo service: ``ECHO_BYTES`` out, the same bytes back."""

    def __init__(self, address) -> None:
        import socket

        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family)
        if family == socket.AF_INET:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.sock.connect(address)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.message = bytes(range(256)) * (ECHO_BYTES // 256) + bytes(ECHO_BYTES % 256)
        self.buffer = bytearray(65536)
        self.round_trips(1)  # the far end's channel is open and echoes

    def round_trips(self, n: int) -> list[float]:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            self.sock.sendall(self.message)
            received = 0
            while received < ECHO_BYTES:
                got = self.sock.recv_into(memoryview(self.buffer)[received:])
                if not got:
                    raise RuntimeError("the echo service closed the connection")
                received += got
            samples.append(time.perf_counter() - start)
            if self.buffer[:ECHO_BYTES] != self.message:
                raise RuntimeError("the echo came back different")
        return samples

    def close(self) -> None:
        self.sock.close()


class AsyncEchoClient:
    """:class:`EchoClient` in an asyncio loop (the child process's, the SSH layer's too)."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.message = bytes(range(256)) * (ECHO_BYTES // 256) + bytes(ECHO_BYTES % 256)

    async def round_trips(self, n: int) -> list[float]:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            self.writer.write(self.message)
            echoed = await self.reader.readexactly(ECHO_BYTES)
            samples.append(time.perf_counter() - start)
            if echoed != self.message:
                raise RuntimeError("the echo came back different")
        return samples

    def close(self) -> None:
        self.writer.close()


def start_echo_floor(bed: Bed, stack: contextlib.ExitStack, process: "AsyncClientProcess | None") -> dict:
    """Start the echo service on the login node over hpc-ssh's pooled connection (as the bench
    user) and reach it directly, through :mod:`jupyter_hpc.ssh.forward` (the kernels' forwards,
    ``SiteConnection.forward_*``) and through OpenSSH ``ssh -L``; in the child process also
    directly and through our forward with the SSH layer in its loop. Returns the variants."""
    from jupyter_hpc.ssh import get_pool, run_in_ssh_loop_sync

    config = bed.ssh_config()

    async def start():
        connection = await get_pool().connect(bench_target(config))
        here, server = await connection.start([bed.remote_python, "-I", "-c", ECHO_SERVER])
        path = (await asyncio.wait_for(server.stdout.readline(), 15)).strip()
        if not path:
            raise RuntimeError(f"the echo service did not start: {await server.stderr.read()}")
        ipc = await here.forward_path_to_path(str(bed.root / "echo-ours.sock"), path)
        tcp = await here.forward_port_to_path(path)
        return server, path, ipc, tcp

    async def stop(server, forwards) -> None:
        for forward in forwards:
            forward.close()
        server.stdin.write_eof()
        await asyncio.wait_for(server.wait_closed(), 10)

    server, path, ipc, tcp = run_in_ssh_loop_sync(start())
    stack.callback(lambda: run_in_ssh_loop_sync(stop(server, (ipc, tcp))))
    variants = {}

    def client(name: str, address) -> None:
        variants[name] = echo = EchoClient(address)
        stack.callback(echo.close)

    client(ECHO_DIRECT, path)
    client(ECHO_OURS_IPC, str(bed.root / "echo-ours.sock"))
    client(ECHO_OURS_TCP, ("127.0.0.1", tcp.get_port()))
    openssh_path = str(bed.root / "echo-openssh.sock")
    interactive_ssh_L(bed, stack, ["-L", f"{openssh_path}:{path}"])
    client(ECHO_OPENSSH, openssh_path)
    if process is not None:
        for name in process.ask(op="echo_open", path=path, config=config, local=str(bed.root / "echo-child.sock"))["names"]:
            variants[name] = InChildProcess(process, name)
    return variants


async def open_echoes_in_child(request: dict) -> dict:
    """The child's side of :func:`start_echo_floor`: the echo reached directly and through our
    forward in this loop (the SSH layer adopted into it), each with an asyncio client."""
    from jupyter_hpc.ssh import get_pool

    connection = await get_pool().connect(bench_target(request["config"]))
    forward = await connection.forward_path_to_path(request["local"], request["path"])
    echoes = {}
    for name, path in ((ECHO_DIRECT_ASYNC, request["path"]), (ECHO_ADOPTED, request["local"])):
        echoes[name] = AsyncEchoClient(*await asyncio.open_unix_connection(path))
        await echoes[name].round_trips(1)
    echoes[ECHO_ADOPTED].forward = forward
    return echoes


# -- the run ------------------------------------------------------------------------------


TCP_LOCAL = "hpc-ssh, local TCP (scripts' default)"
OPENSSH_IPC = "hpc-ssh's remote kernel through OpenSSH ssh -tt -L (C client), local ipc"
IPC_LOCAL = "hpc-ssh, local ipc, SSH in a thread (JUPYTER_HPC_SSH_LOOP=thread)"
UNCOALESCED = "hpc-ssh, local ipc, SSH in a thread, as before issue 30"


@contextlib.contextmanager
def asyncssh_forwards():
    """While in it, kernels' channels are forwarded by asyncssh's own ``forward_local_*``
    (each SSH packet a write of its own to the local socket) instead of
    :mod:`jupyter_hpc.ssh.forward`."""
    from jupyter_hpc.ssh.pool import SiteConnection

    saved = {name: getattr(SiteConnection, name) for name in
             ("forward_port_to_path", "forward_path_to_path", "forward_port", "forward_path_to_port")}

    async def port_to_path(self, remote_path, local_port=0):
        return await self.conn.forward_local_port_to_path("127.0.0.1", local_port, remote_path)

    async def path_to_path(self, local_path, remote_path):
        return await self.conn.forward_local_path(local_path, remote_path)

    async def port(self, remote_port, local_port=0, remote_host="127.0.0.1"):
        return await self.conn.forward_local_port("127.0.0.1", local_port, remote_host, remote_port)

    async def path_to_port(self, local_path, remote_port, remote_host="127.0.0.1"):
        return await self.conn.forward_local_path_to_port(local_path, remote_host, remote_port)

    SiteConnection.forward_port_to_path, SiteConnection.forward_path_to_path = port_to_path, path_to_path
    SiteConnection.forward_port, SiteConnection.forward_path_to_port = port, path_to_port
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(SiteConnection, name, method)


def as_before_issue_30(conn) -> None:
    """Undo :func:`jupyter_hpc.ssh.coalesce.coalesce_writes` and
    :func:`jupyter_hpc.ssh.ignore_packets.skip_ignore_packets` on an open connection."""
    from jupyter_hpc.ssh import run_in_ssh_loop_sync
    from jupyter_hpc.ssh.coalesce import CoalescingTransport

    async def unwrap() -> None:
        if isinstance(conn._transport, CoalescingTransport):
            conn._transport._flush()
            conn._transport = conn._transport.wrapped
        conn.__dict__.pop("send_packet", None)  # asyncssh's own again, ignore packets included

    run_in_ssh_loop_sync(unwrap())


def interactive_ssh_L(bed: Bed, stack: contextlib.ExitStack, forwards: list[str]) -> subprocess.Popen:
    """OpenSSH ``ssh -L`` with a remote ``sleep`` on a forced tty (``-tt``): an interactive
    session, for which both ssh and sshd set ``TCP_NODELAY`` on the SSH connection. With ``-N``
    neither does, and a kernel's round trip, several SSH packets in flight, waits ~40 ms for a
    delayed ACK each time (the peers' row); an echo, one packet each way, would not show it."""
    tunnel = subprocess.Popen(
        bed.ssh_argv("-tt", "-o", "ExitOnForwardFailure=yes", *forwards) + ["sleep", "3600"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )

    def end_tunnel() -> None:
        tunnel.terminate()
        tunnel.wait(10)

    stack.callback(end_tunnel)
    return tunnel


def kernel_over_openssh_L(bed: Bed, stack: contextlib.ExitStack, km) -> InThisProcess:
    """The hpc-ssh kernel ``km`` started (its launcher, remote Unix sockets, secrets), reached
    instead through one OpenSSH ``ssh -N -L`` forwarding its five sockets to local ones: the
    same kernel and sshd with a C relay in place of our asyncssh one, for reference."""
    from jupyter_client import BlockingKernelClient

    from jupyter_hpc.launcher.remote_launcher import CHANNELS

    answer = km.provisioner._remote.answer
    if answer["transport"] != "ipc":
        raise RuntimeError(f"the reference kernel listens on {answer['transport']}, not Unix sockets")
    prefix = str(bed.root / "openssh-L")
    forwards = []
    for number, channel in enumerate(CHANNELS, start=1):
        forwards += ["-L", f"{prefix}-{number}:{answer['ip']}-{int(answer['ports'][channel])}"]
    tunnel = interactive_ssh_L(bed, stack, forwards)
    deadline = time.monotonic() + 15
    while not all(os.path.exists(f"{prefix}-{number}") for number in range(1, len(CHANNELS) + 1)):
        if tunnel.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ssh -L to the kernel's sockets did not come up")
        time.sleep(0.05)
    info = dict(km.get_connection_info(session=False), transport="ipc", ip=prefix)
    info.update({f"{channel}_port": number for number, channel in enumerate(CHANNELS, start=1)})
    client = BlockingKernelClient()
    client.load_connection_info(info)
    client.start_channels()
    stack.callback(client.stop_channels)
    client.wait_for_ready(timeout=60)
    return InThisProcess(client)


def start_variants(bed: Bed, with_plain: bool, with_async: bool, with_floor: bool):
    """Start every kernel and the echo floor; return ({name: InThisProcess | InChildProcess} in
    table order, {name: echo variant}, stack)."""
    import jupyter_client
    from jupyter_client import BlockingKernelClient

    stack = contextlib.ExitStack()
    variants = {}
    managers = {}

    def managed(name: str, kernel_name: str, **start_kw):
        km = jupyter_client.KernelManager(kernel_name=kernel_name)
        managers[name] = km
        km.start_kernel(**start_kw)
        stack.callback(km.shutdown_kernel, now=False)
        client = km.client()
        client.start_channels()
        stack.callback(client.stop_channels)
        client.wait_for_ready(timeout=60)
        variants[name] = InThisProcess(client)

    devnull = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    managed("local", bed.kernelspec("bench-local"), **devnull)
    managed(TCP_LOCAL, bed.kernelspec("bench-ssh", bed.ssh_config()))
    managed(IPC_LOCAL, bed.kernelspec("bench-ssh-ipc", bed.ssh_config(local_transport="ipc")))
    process = None
    if with_async:
        # jupyter_server's default path: the same kernelspec (local ipc) from an async client
        # whose loop runs the SSH layer too, against a local kernel driven the same way.
        process = AsyncClientProcess({LOCAL_ASYNC: "bench-local", ADOPTED: "bench-ssh-ipc"})
        stack.callback(process.close)
        for name in process.names:
            variants[name] = InChildProcess(process, name)
    # The same on a connection of its own (its own known_hosts copy) that sends each SSH packet
    # as asyncssh writes it: what jupyter_hpc.ssh.coalesce saves, in the same run.
    own = str(shutil.copy(bed.sshd.known_hosts, bed.root / "known_hosts.uncoalesced"))
    with asyncssh_forwards():
        managed(UNCOALESCED, bed.kernelspec("bench-ssh-ipc-each", bed.ssh_config(local_transport="ipc", known_hosts=own)))
    as_before_issue_30(managers[UNCOALESCED].provisioner._remote.connection.conn)
    if with_floor:
        # A kernel of its own, started by hpc-ssh but with no client on our forwards: a client
        # there would have our SSH layer relay this row's iopub traffic during its timings.
        km = jupyter_client.KernelManager(kernel_name=bed.kernelspec("bench-ssh-ipc-openssh", bed.ssh_config(local_transport="ipc")))
        km.start_kernel()
        stack.callback(km.shutdown_kernel, now=False)
        variants[OPENSSH_IPC] = kernel_over_openssh_L(bed, stack, km)
    managed(
        "hpc-ssh fallback (tcp+curve)",
        bed.kernelspec("bench-ssh-curve", bed.ssh_config(bed.sshd_nosl)),
    )
    if with_plain:
        info = stack.enter_context(bed.plain_tcp_kernel_over_ssh_L())
        client = BlockingKernelClient()
        client.load_connection_info(info)
        client.start_channels()
        stack.callback(client.stop_channels)
        client.wait_for_ready(timeout=60)
        variants["plain tcp over OpenSSH -L (peers)"] = InThisProcess(client)
    order = ["local", LOCAL_ASYNC, TCP_LOCAL, IPC_LOCAL, ADOPTED]
    variants = {name: variants[name] for name in sorted(variants, key=lambda n: order.index(n) if n in order else len(order))}
    floor = start_echo_floor(bed, stack, process) if with_floor else {}
    return variants, floor, stack


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and bytes (about a minute)")
    parser.add_argument("--requests", type=int, help="round trips per variant (default 1000, quick 300)")
    parser.add_argument("--mb", type=int, help="MB printed per throughput sample (default 100, quick 20)")
    parser.add_argument("--repeats", type=int, help="throughput samples per variant (default 3)")
    parser.add_argument("--chunks", default=CHUNKS_KIB,
                        help=f"comma-separated sizes in KiB of the cell's writes (default {CHUNKS_KIB})")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain-TCP ssh -L peer variant")
    parser.add_argument("--no-async", action="store_true", help="skip jupyter_server's path (async clients, SSH in their loop)")
    parser.add_argument("--no-floor", action="store_true", help="skip the relay floor (an echo service, no kernel)")
    parser.add_argument("--serve-async-clients", metavar="KERNELS_JSON", help=argparse.SUPPRESS)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.serve_async_clients:
        return async_clients_main(args.serve_async_clients)
    requests = args.requests or (300 if args.quick else 1000)
    chunks = [int(kib) * 1024 for kib in args.chunks.split(",")]
    nbytes = (args.mb or (20 if args.quick else 100)) * 1_000_000 // max(chunks) * max(chunks)
    repeats = args.repeats or 3
    blocks = 10
    quiet_logs(args.verbose)

    bed = Bed(fallback_sshd=True)
    try:
        t0 = time.perf_counter()
        variants, floor, stack = start_variants(
            bed, with_plain=not args.no_plain, with_async=not args.no_async, with_floor=not args.no_floor
        )
        with stack:
            timed = {**variants, **floor}  # the echo's blocks interleaved with the kernels'
            for variant in timed.values():  # warm up every path (JIT-free, but caches, forwards)
                variant.round_trips(20)
            samples = {name: [] for name in timed}
            block_p50s = {name: [] for name in timed}  # for the overhead, paired block by block
            for _ in range(blocks):
                for name, variant in timed.items():
                    try:
                        block = variant.round_trips(requests // blocks)
                    except Exception as exc:
                        raise RuntimeError(f"round trip through {name!r} failed") from exc
                    samples[name] += block
                    block_p50s[name].append(statistics.median(block))
            rates = {(name, chunk): [] for chunk in chunks for name in variants}
            ceilings = {"OpenSSH ssh host head -c N /dev/zero": [], "asyncssh (hpc-ssh's connection), same command": []}
            cipher = "?"
            with bed.ssh_master() as control:
                for _ in range(repeats):
                    ceilings["OpenSSH ssh host head -c N /dev/zero"].append(openssh_cat(bed, control, nbytes))
                    rate, cipher = asyncssh_cat(bed, nbytes)
                    ceilings["asyncssh (hpc-ssh's connection), same command"].append(rate)
                    for chunk in chunks:
                        for name, variant in variants.items():
                            rates[name, chunk].append(variant.throughput(nbytes, chunk))
        elapsed = time.perf_counter() - t0
        report(samples, block_p50s, rates, ceilings, requests, nbytes, repeats, cipher, elapsed, list(floor))
    except BaseException:
        print(bed.log_tail(), file=sys.stderr)
        raise
    finally:
        bed.close()


def baseline(name: str) -> str:
    """What a row is compared with: the local kernel (or the echo reached without SSH) driven
    the same way, in the same process."""
    return {ADOPTED: LOCAL_ASYNC, ECHO_ADOPTED: ECHO_DIRECT_ASYNC}.get(
        name, ECHO_DIRECT if name.startswith("echo") else "local"
    )


def paired_overheads(block_p50s, name: str) -> list[float]:
    """ms: each block's p50 minus its baseline's p50 in the same pass, so load that comes and
    goes during the run falls on both sides of each difference."""
    return [(mine - theirs) * 1e3 for mine, theirs in zip(block_p50s[name], block_p50s[baseline(name)])]


def round_trip_rows(samples, block_p50s, names) -> list[list[str]]:
    rows = []
    for name in names:
        s, base = summarize(samples[name]), summarize(samples[baseline(name)])
        paired = paired_overheads(block_p50s, name)
        rows.append([
            name + (" ¹" if name in (ADOPTED, ECHO_ADOPTED) else ""),
            f"{s['p50'] * 1e3:.3f}", f"{s['p90'] * 1e3:.3f}", f"{s['p99'] * 1e3:.3f}",
            f"{s['min'] * 1e3:.3f}–{s['max'] * 1e3:.2f}", f"{s['p50'] / base['p50']:.2f}×",
            f"{(s['p50'] - base['p50']) * 1e3:+.3f}",
            f"{statistics.median(paired):+.3f}", f"{min(paired):+.3f} … {max(paired):+.3f}",
        ])
    return rows


ROUND_TRIP_HEADERS = ["variant", "p50 ms", "p90 ms", "p99 ms", "min–max ms", "p50 ratio", "p50 overhead ms",
                      "overhead, median of blocks ms", "blocks min … max ms"]


def report(samples, block_p50s, rates, ceilings, requests, nbytes, repeats, cipher, elapsed, floor=()) -> None:
    kernels = [name for name in samples if name not in floor]
    print(f"\n#### Execute round trip (`pass` → execute_reply), {len(samples['local'])} requests per variant "
          f"in {len(block_p50s['local'])} interleaved blocks\n")
    print(table(ROUND_TRIP_HEADERS, round_trip_rows(samples, block_p50s, kernels)))
    if ADOPTED in samples:
        print(f"\n¹ against `{LOCAL_ASYNC}` (same client, same process); every other row against `local`.")
    if floor:
        print(f"\n#### The relay floor: a {ECHO_BYTES}-byte echo on the login node, no kernel, no ZMQ, "
              f"{len(samples[floor[0]])} round trips per variant in the same interleaved blocks\n")
        print(table(ROUND_TRIP_HEADERS, round_trip_rows(samples, block_p50s, floor)))
        if ECHO_ADOPTED in samples:
            print(f"\n¹ against `{ECHO_DIRECT_ASYNC}` (an asyncio client in the second process); "
                  f"every other row against `{ECHO_DIRECT}` (a blocking client in this process).")
        print("\nOverhead over local, medians of blocks (ms): the relay alone (echo) against a kernel's round trip")
        pairs = ((ECHO_OURS_TCP, TCP_LOCAL), (ECHO_OURS_IPC, IPC_LOCAL), (ECHO_ADOPTED, ADOPTED), (ECHO_OPENSSH, OPENSSH_IPC))
        for echo, kernel in pairs:
            if echo in samples and kernel in samples:
                relay = statistics.median(paired_overheads(block_p50s, echo))
                whole = statistics.median(paired_overheads(block_p50s, kernel))
                print(f"* {kernel}: relay {relay:+.3f}, kernel {whole:+.3f}, beyond the relay {whole - relay:+.3f}")

    raw = summarize(ceilings["OpenSSH ssh host head -c N /dev/zero"])["p50"]
    rows = []
    for name, values in ceilings.items():
        s = summarize(values)
        rows.append([name, "–", f"{s['p50']:.1f}", f"{s['min']:.1f}–{s['max']:.1f}", f"{s['p50'] / raw:.0%}", "–"])
    for (name, chunk), values in rates.items():
        s = summarize(values)
        local_rate = summarize(rates[baseline(name), chunk])["p50"]
        rows.append([
            name + (" ¹" if name == ADOPTED else ""),
            f"{chunk // 1024} KiB", f"{s['p50']:.1f}", f"{s['min']:.1f}–{s['max']:.1f}",
            f"{s['p50'] / raw:.0%}", f"{s['p50'] / local_rate:.0%}",
        ])
    print(f"\n#### iopub throughput: a cell writing {nbytes / 1e6:.0f} MB to stdout, {repeats} samples each "
          f"(asyncssh cipher {cipher})\n")
    print(table(["variant", "cell's writes", "median MB/s", "min–max MB/s", "of raw OpenSSH", "of local, same writes"], rows))
    if ADOPTED in samples:
        print(f"\n¹ against `{LOCAL_ASYNC}`, same writes; every other row against `local`.")
    print(f"\n(whole run {elapsed:.0f} s)")


if __name__ == "__main__":
    main()
