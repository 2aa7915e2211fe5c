"""Does the server stay responsive while a 200 MB upload runs? (issue 17)

A real jupyter_server with SFTPContentsManager over the bed's sshd, and beside it in the same
run a jupyter_server with its own local AsyncLargeFileManager. For each: the latency of a
folder listing (GET /api/contents of a 1,000-entry folder, as another tab's file browser asks)
and of a cell (``1 + 1`` in a kernel on the cluster, through the server's websocket, until the
kernel is idle again) when the server is idle, then while one client uploads 200 MB through
JupyterLab's chunked path (PUT with chunk 1, 2, …, -1 of 1 MiB, base64), both asked every 0.1 s
until the upload ends.

Target (issue 17): another request answers within 0.5 s during the upload.

    python benchmarks/contents_upload.py [--mb 200] [--entries 1000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests
import websocket
from _bed import Bed, summarize, table
from server_helpers import Server

CHUNK = 1024 * 1024


def make_folder(where: Path, entries: int, owner=None) -> None:
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    for number in range(entries):
        (where / f"file-{number:05d}.txt").write_text("x\n")
    if owner is not None:
        subprocess.run(["chown", "-R", f"{owner.pw_uid}:{owner.pw_gid}", str(where.parent)], check=True)


def start(workdir: Path, config: dict) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    return Server(workdir)


def listing_ms(server: Server, folder: str) -> float:
    started = time.perf_counter()
    response = requests.get(f"http://127.0.0.1:{server.port}/api/contents/{folder}",
                            headers={"Authorization": f"token {server.token}"}, timeout=120)
    response.raise_for_status()
    assert len(response.json()["content"]) > 0
    return (time.perf_counter() - started) * 1000


class Cell:
    """A kernel on the cluster, started through the server and reached through its websocket."""

    def __init__(self, server: Server, kernel_name: str) -> None:
        self.id = server.api("POST", "kernels", json={"name": kernel_name}).json()["id"]
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/api/kernels/{self.id}/channels?session_id={self.session}",
            header=[f"Authorization: token {server.token}"], timeout=120)
        for _ in range(3):
            self.run_ms()

    def run_ms(self) -> float:
        """``1 + 1`` executed: from the request to the kernel's idle after it, in ms."""
        msg_id = uuid.uuid4().hex
        started = time.perf_counter()
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": self.session,
                       "username": "bench", "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": "1 + 1", "silent": False, "store_history": False}}))
        reply = idle = False
        while not (reply and idle):
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "execute_reply":
                assert msg["content"]["status"] == "ok", msg["content"]
                reply = True
            idle = idle or (msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle")
        return (time.perf_counter() - started) * 1000


def upload(server: Server, path: str, megabytes: int) -> float:
    """JupyterLab's chunked upload; seconds taken."""
    rng = random.Random(17)
    session = requests.Session()
    session.headers["Authorization"] = f"token {server.token}"
    started = time.perf_counter()
    for number in range(1, megabytes + 1):
        chunk = -1 if number == megabytes else number
        body = {"type": "file", "format": "base64", "chunk": chunk, "name": path.rsplit("/", 1)[-1], "path": path,
                "content": base64.b64encode(rng.randbytes(CHUNK)).decode()}
        session.put(f"http://127.0.0.1:{server.port}/api/contents/{path}", json=body, timeout=300).raise_for_status()
    return time.perf_counter() - started


def measure(server: Server, folder: str, target: str, megabytes: int, kernel_name: str) -> dict:
    for _ in range(3):
        listing_ms(server, folder)  # warm
    cell = Cell(server, kernel_name)
    times: dict[str, list[float]] = {key: [] for key in ("list idle", "cell idle", "list busy", "cell busy")}
    for _ in range(30):
        times["list idle"].append(listing_ms(server, folder))
        times["cell idle"].append(cell.run_ms())
        time.sleep(0.1)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("seconds", upload(server, target, megabytes)))
    thread.start()
    while thread.is_alive():
        times["list busy"].append(listing_ms(server, folder))
        times["cell busy"].append(cell.run_ms())
        time.sleep(0.1)
    thread.join()
    cell.ws.close()
    server.api("DELETE", f"kernels/{cell.id}")
    return {**times, "seconds": result["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--entries", type=int, default=1000)
    args = parser.parse_args()
    bed = Bed()
    servers: list[Server] = []
    try:
        home = Path(bed.user.pw_dir)
        make_folder(home / "bench-upload" / "folder", args.entries, bed.user)
        site = bed.ssh_config()
        site["roots"] = {"home": "~"}
        kernel_name = bed.kernelspec("cluster", bed.ssh_config())
        sftp_server = start(bed.root / "sftp-server", {
            "ServerApp": {"contents_manager_class": "jupyter_hpc.contents.SFTPContentsManager"},
            "HPCSites": {"sites": {"bench": site}},
        })
        servers.append(sftp_server)
        local_server = start(bed.root / "local-server", {
            "ServerApp": {"contents_manager_class":
                          "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager"},
        })
        servers.append(local_server)
        make_folder(bed.root / "local-server" / "bench-upload" / "folder", args.entries)
        results = {
            "SFTPContentsManager": measure(sftp_server, "bench-upload/folder", "bench-upload/big.bin", args.mb,
                                           kernel_name),
            "AsyncLargeFileManager (local)": measure(local_server, "bench-upload/folder", "bench-upload/big.bin",
                                                     args.mb, kernel_name),
        }
        uploaded = home / "bench-upload" / "big.bin"
        assert uploaded.stat().st_size == args.mb * CHUNK, uploaded.stat().st_size
        rows = []
        for name, result in results.items():
            for what in ("list", "cell"):
                for phase in ("idle", "busy"):
                    stats = summarize(result[f"{what} {phase}"])
                    busy = phase == "busy"
                    rows.append([
                        name, f"{args.entries}-entry listing" if what == "list" else "cell 1 + 1 (cluster kernel)",
                        f"during {args.mb} MB upload" if busy else "idle", str(stats["n"]),
                        f"{stats['p50']:.0f}", f"{stats['p90']:.0f}", f"{stats['max']:.0f}",
                        f"{args.mb / result['seconds']:.1f} MB/s" if busy else "",
                        ("yes" if stats["max"] <= 500 else "NO") if busy else ""])
        print(table(["server", "request", "while", "n", "p50 ms", "p90 ms", "max ms", "upload", "max <= 500 ms"], rows))
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(30)
        shutil.rmtree(Path(bed.user.pw_dir) / "bench-upload", ignore_errors=True)
        bed.close()
    os._exit(0)


if __name__ == "__main__":
    main()
