"""The cluster proxy against OpenSSH's own port forward, to the same web service, in one run.

A web service (Python's ``ThreadingHTTPServer``) listens on the login node's 127.0.0.1 (the
bench sshd's host); curl fetches from it three ways:
- through the route ``/jupyter-hpc/proxy/bench/127.0.0.1:<port>/`` of a JupyterLab server
  (jupyter_hpc's pooled asyncssh connection, one direct-tcpip channel per request), once with
  the server's API token (a script's way; jupyter_server then also signs a fresh login cookie
  for every response) and once with the login cookie a browser holds (how a dashboard's page
  and its assets come);
- through ``ssh -N -L`` (OpenSSH's client, one forward, a channel per connection), the way
  users reach a dashboard today.

Measured: a 100 MB download (MB/s, best and median of the rounds), and 1,000 small requests
(a 1 KB file) each way, in ``--blocks`` interleaved blocks (so that the shared machine's
drift hits both ways alike), each block from one curl process, so curl's own start is out:
per-request ``time_total`` p50/p90/p99. Targets (issue 28): throughput >= 0.7x, small-request
p50 <= 2x.

    python benchmarks/proxy.py [--rounds 3] [--small 1000] [--blocks 10] [--mb 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bed import Bed, free_port, summarize, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lab_browser import Lab, lab_config  # noqa: E402


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def curl_times(urls: list[str], headers: list[str]) -> list[tuple[float, int]]:
    """Fetch each URL in one curl process; (time_total, bytes) per transfer."""
    with tempfile.NamedTemporaryFile("w", suffix=".curl", delete=False) as config:
        for header in headers:  # a quoted string in curl's config: a cookie's quotes escaped
            escaped = header.replace("\\", "\\\\").replace('"', '\\"')
            config.write(f'header = "{escaped}"\n')
        for url in urls:
            config.write(f'url = "{url}"\noutput = "/dev/null"\n')
    try:
        out = subprocess.run(["curl", "-s", "-S", "--fail", "-K", config.name, "-w", "%{time_total} %{size_download}\\n"],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(config.name)
    return [(float(t), int(n)) for t, n in (line.split() for line in out.splitlines() if line.strip())]


SSH = "ssh -L (OpenSSH)"  # the baseline


def login_cookie(lab: Lab) -> str:
    """The login cookie the server gives (``name=value``), as a browser holds it after logging in:
    a dashboard's page and its assets reach the route with it, not with an API token."""
    import requests

    reply = requests.get(f"{lab.base}/api/status", headers={"Authorization": f"token {lab.token}"}, timeout=30)
    reply.raise_for_status()
    name, value = next((c.name, c.value) for c in reply.cookies if c.name.startswith("username-"))
    return f"{name}={value}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=10, help="interleaved blocks the small requests come in")
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()

    bed = Bed()
    work = Path(tempfile.mkdtemp(prefix="jupyter-hpc-bench-proxy-"))
    processes: list[subprocess.Popen] = []
    try:
        files = work / "files"
        files.mkdir()
        (files / "small.txt").write_bytes(os.urandom(1024))
        with open(files / "big.bin", "wb") as handle:
            for _ in range(args.mb):
                handle.write(os.urandom(1 << 20))
        web_port = free_port()
        processes.append(subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                           str(files), str(web_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(web_port)

        # OpenSSH's forward, logged in as the same user with the same key and host key pinning.
        forward_port = free_port()
        processes.append(subprocess.Popen([
            "ssh", "-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "IdentitiesOnly=yes",
            "-i", str(bed.sshd.client_key), "-o", f"UserKnownHostsFile={bed.sshd.known_hosts}",
            "-p", str(bed.sshd.port), "-L", f"127.0.0.1:{forward_port}:127.0.0.1:{web_port}",
            f"{bed.user.pw_name}@127.0.0.1",
        ]))
        wait_port(forward_port)

        site = bed.sshd.provisioner_config(bed.user.pw_name, remote_python=bed.remote_python)
        with Lab.running(work / "lab", lab_config({"bench": site})) as lab:
            route = f"{lab.base}/jupyter-hpc/proxy/bench/127.0.0.1:{web_port}"
            ways = {
                "cluster proxy (jupyter-hpc), API token": (route, [f"Authorization: token {lab.token}"]),
                "cluster proxy (jupyter-hpc), login cookie": (route, [f"Cookie: {login_cookie(lab)}"]),
                SSH: (f"http://127.0.0.1:{forward_port}", []),
            }
            for base, headers in ways.values():  # warm: the pooled login, curl's caches
                curl_times([f"{base}/small.txt"] * 5, headers)

            rates: dict[str, list[float]] = {name: [] for name in ways}
            small: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):  # interleaved, so drift on the machine hits both alike
                for name, (base, headers) in ways.items():
                    [(seconds, size)] = curl_times([f"{base}/big.bin"], headers)
                    assert size == args.mb << 20, (name, size)
                    rates[name].append(size / seconds / 1e6)
            # Small requests in interleaved blocks, alternating which way goes first; the server's
            # own smallest authenticated API call (GET /api/status) in each block too, for scale.
            floor: list[float] = []
            ratios: dict[str, list[float]] = {name: [] for name in ways}
            per_block = max(1, args.small // args.blocks)
            for block in range(args.blocks):
                order = list(ways.items()) if block % 2 == 0 else list(ways.items())[::-1]
                block_p50 = {}
                for name, (base, headers) in order:
                    times = curl_times([f"{base}/small.txt"] * per_block, headers)
                    assert all(size == 1024 for _, size in times), name
                    small[name] += [t * 1000 for t, _ in times]
                    block_p50[name] = statistics.median(t for t, _ in times)
                for name in ways:
                    ratios[name].append(block_p50[name] / block_p50[SSH])
                floor += [t * 1000 for t, _ in curl_times([f"{lab.base}/api/status"] * per_block,
                                                          [f"Authorization: token {lab.token}"])]

        rows = []
        for name in ways:
            stats = summarize(small[name])
            rows.append([name, f"{max(rates[name]):.0f}", f"{statistics.median(rates[name]):.0f}",
                         f"{stats['p50']:.2f}", f"{stats['p90']:.2f}", f"{stats['p99']:.2f}"])
        print(f"\n{args.mb} MB download ({args.rounds} rounds) and {len(small[SSH])} requests of 1 KB "
              f"({args.blocks} interleaved blocks), curl, the same service on the login node's 127.0.0.1\n")
        stats = summarize(floor)
        rows.append(["(the server's own GET /api/status)", "", "", f"{stats['p50']:.2f}", f"{stats['p90']:.2f}",
                     f"{stats['p99']:.2f}"])
        print(table(["way", "MB/s best", "MB/s median", "small p50 ms", "p90 ms", "p99 ms"], rows))
        print()
        for name in ways:
            if name == SSH:
                continue
            throughput = statistics.median(rates[name]) / statistics.median(rates[SSH])
            latency = statistics.median(small[name]) / statistics.median(small[SSH])
            print(f"{name}: throughput {throughput:.2f}x OpenSSH's (target >= 0.7x): "
                  f"{'met' if throughput >= 0.7 else 'MISSED'}; small-request p50 {latency:.2f}x "
                  f"(target <= 2x): {'met' if latency <= 2 else 'MISSED'}; per block "
                  f"{statistics.median(ratios[name]):.2f}x median, {min(ratios[name]):.2f}-{max(ratios[name]):.2f}x")
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)
        bed.close() if hasattr(bed, "close") else None


if __name__ == "__main__":
    main()
