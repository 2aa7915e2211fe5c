"""What one certificate costs: the key service's pair-making against sshproxy's, and whole logins.

sshproxy makes each pair with two ssh-keygen processes (``-t rsa -m PEM``, then ``-s`` to sign)
through temporary files; ours makes it in-process with asyncssh. Both are timed here in the
same run, interleaved. Then whole ``POST /create_pair/default/`` logins against the real
service (a subprocess, as deployed): one after another and N at once, with the service's CPU
seconds per login read from /proc (argon2id verification is most of it, by design). Last, refusals
of a known name's wrong password against an unknown name's, interleaved: they should cost the same
(an unknown name is verified against a dummy hash of the users' cost), so timing tells no names.

    python benchmarks/keyservice.py [--rounds 20] [--users 20]

Columns: median and min-max wall milliseconds; CPU ms per login in the service process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyotp  # noqa: E402

from jupyter_hpc.keyservice import UserStore, request_certificate  # noqa: E402
from jupyter_hpc.keyservice.ca import CertificateAuthority  # noqa: E402


def sshproxy_pair(ca: Path, work: Path) -> None:
    """sshproxy's recipe: ssh-keygen makes an RSA PEM key, ssh-keygen -s signs it (files on disk)."""
    key = work / "k"
    for path in (key, work / "k.pub", work / "k-cert.pub"):
        path.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-f", str(key), "-N", "", "-t", "rsa", "-m", "PEM", "-C", "bench"], check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-z", "1", "-I", "user_bench", "-n", "bench", "-V", "+43200",
                    str(key) + ".pub"], check=True, stderr=subprocess.DEVNULL)
    (work / "k-cert.pub").read_text()


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - start) * 1000


def row(name: str, samples: list[float], extra: str = "") -> str:
    return f"{name:<46} {statistics.median(samples):9.1f} {min(samples):9.1f}-{max(samples):<9.1f} {extra}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pair_table(rounds: int, work: Path) -> list[str]:
    ca_path = work / "sshproxy_ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca_path)], check=True)
    ours = CertificateAuthority(work / "state")
    samples: dict[str, list[float]] = {"sshproxy": [], "rsa": [], "ed25519": []}
    for _ in range(rounds):  # interleaved, so machine noise falls on all three alike
        samples["sshproxy"].append(timed(sshproxy_pair, ca_path, work))
        samples["rsa"].append(timed(ours.issue, "bench", "default", "127.0.0.1", 43200, "ssh-rsa"))
        samples["ed25519"].append(timed(ours.issue, "bench", "default", "127.0.0.1", 43200, "ssh-ed25519"))
    return [
        row("sshproxy: ssh-keygen rsa + ssh-keygen -s", samples["sshproxy"], "(baseline)"),
        row("ours: asyncssh rsa + sign", samples["rsa"],
            f"x{statistics.median(samples['sshproxy']) / statistics.median(samples['rsa']):.1f} faster"),
        row("ours: asyncssh ed25519 + sign (default)", samples["ed25519"],
            f"x{statistics.median(samples['sshproxy']) / statistics.median(samples['ed25519']):.1f} faster"),
    ]


async def login_table(users: int, work: Path) -> list[str]:
    state = work / "service"
    store = UserStore(state)
    secrets = {f"bench{n}": store.add_user(f"bench{n}", f"bench-password-{n}") for n in range(users)}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter_hpc.cli.main", "keyservice", "--port", "0", "--state-dir", str(state),
         "--scope", "default"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        url = process.stdout.readline().split("listening on", 1)[1].strip() + "create_pair/default/"

        async def login(name: str) -> float:
            start = time.perf_counter()
            await request_certificate(url, name, f"bench-password-{name[5:]}", pyotp.TOTP(secrets[name]).now())
            return (time.perf_counter() - start) * 1000

        names = sorted(secrets, key=lambda n: int(n[5:]))
        half = len(names) // 2
        await login(names[0])  # warm: first request pays imports in the service
        cpu = cpu_seconds(process.pid)
        one_by_one = [await login(name) for name in names[1:half]]
        cpu_one = (cpu_seconds(process.pid) - cpu) * 1000 / len(one_by_one)
        cpu = cpu_seconds(process.pid)
        start = time.perf_counter()
        together = await asyncio.gather(*(login(name) for name in names[half:]))
        wall = (time.perf_counter() - start) * 1000
        cpu_all = (cpu_seconds(process.pid) - cpu) * 1000 / len(together)
        from jupyter_hpc.keyservice import LoginRefused

        async def refused(name: str) -> float:
            start = time.perf_counter()
            try:
                await request_certificate(url, name, "not-the-password", "123456")
            except LoginRefused:
                return (time.perf_counter() - start) * 1000
            raise AssertionError(f"{name} was not refused")

        known, unknown = [], []
        for n, name in enumerate(names):  # one failure per name: no lockout in the way
            known.append(await refused(name))
            unknown.append(await refused(f"nobody{n}"))
    finally:
        process.terminate()
        process.wait(10)
    return [
        row(f"login (POST create_pair), {len(one_by_one)} one after another", one_by_one, f"cpu {cpu_one:.0f} ms/login"),
        row(f"login, {len(together)} at once (each)", list(together),
            f"cpu {cpu_all:.0f} ms/login, all done in {wall:.0f} ms"),
        row("refusal: a known name, wrong password", known, "(baseline)"),
        row("refusal: an unknown name", unknown,
            f"x{statistics.median(unknown) / statistics.median(known):.2f} the known name's time"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="pairs made per variant")
    parser.add_argument("--users", type=int, default=20, help="users logging in (half in turn, half at once)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jupyter-hpc-bench-ks-") as tmp:
        work = Path(tmp)
        lines = pair_table(args.rounds, work) + asyncio.run(login_table(max(args.users, 4), work))
    print(f"{'key service (ms)':<46} {'median':>9} {'min-max':<19} ")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
