"""What a hub login costs: SSHCertAuthenticator against JupyterHub's plain DummyAuthenticator.

Two real hubs in one run, on the same bed as tests/test_hub*.py (``tests/hub_helpers.HubBed``:
JupyterHub 6 as the non-root user ``hpchub``, npm's configurable-http-proxy, our key service,
an sshd trusting only its CA), with the same config but for the authenticator (and, for
the whole flow below, the spawner):

- ``SSHCertAuthenticator``: password + one-time code posted to the key service (argon2id
  check, TOTP, an Ed25519 key and certificate), the pair parsed, kept in encrypted auth_state,
  the hub cookie and tokens given the certificate's end;
- ``DummyAuthenticator`` (baseline): JupyterHub's own login with no check and no auth_state,
  which is what the hub itself costs for a login.

Then N more users at once through the whole flow (log in, the server starts, JupyterLab,
a kernel, a cell's output), against plain JupyterHub: DummyAuthenticator,
SimpleLocalProcessSpawner and a local ipykernel (what a hub without a cluster costs); and N
more users of our hub whose servers start without the bubblewrap sandbox (``sandbox = "off"``),
which is what the sandbox costs. Our hub runs with internal_ssl, as a site's should.

A login is the login form's POST up to the hub's redirect (the form page is fetched first,
untimed); no server is started, so this is the hub's and the key service's share alone. Each
user logs in once per hub (a one-time code is accepted once): N logins one after another,
interleaved between the two hubs, then N other users at once on each hub. CPU seconds of the
jupyterhub process and of the key service come from /proc around each phase.

    python benchmarks/hub_login.py [--users 20] [--no-flow]

Runs as root (it creates unix users and starts sshd, like the tests).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import requests  # noqa: E402

from demo_helpers import ensure_demo_venv  # noqa: E402
from hub_helpers import Browser, HubBed  # noqa: E402
from testbed.remote_python import ensure_remote_python  # noqa: E402

QUIET = 'c.JupyterHub.log_level = "INFO"\nc.Spawner.start_timeout = 600\nc.Spawner.http_timeout = 600\n'
# The baseline hub: JupyterHub's own login and spawner (a plain jupyterhub-singleuser as the
# hub's user, with a local ipykernel), no key service, no credential, no cluster.
DUMMY = QUIET + """
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "/tmp/jupyter-hpc-bench-plain/{username}"
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Variant:
    def __init__(self, name: str, bed: HubBed, with_code: bool) -> None:
        self.name, self.bed, self.with_code = name, bed, with_code
        self.hub_pid = bed.hub_pid()
        self.keyservice_pid = bed.keyservice.process.pid if with_code else None

    def prepare(self, user: str) -> tuple[requests.Session, dict[str, str]]:
        """The login form, as a browser has it before the user presses the button."""
        session = requests.Session()
        page = session.get(f"{self.bed.url}/hub/login", timeout=60)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        password, _ = self.bed.users.get(user, ("any password", ""))
        form = {"_xsrf": xsrf, "username": user, "password": password}
        if self.with_code:
            form["otp"] = self.bed.code(user)
        return session, form

    def login(self, session: requests.Session, form: dict[str, str]) -> float:
        start = time.perf_counter()
        reply = session.post(f"{self.bed.url}/hub/login?next=", data=form, allow_redirects=False, timeout=120)
        elapsed = (time.perf_counter() - start) * 1000
        if reply.status_code != 302 or "jupyterhub-hub-login" not in session.cookies:
            raise SystemExit(f"{self.name}: login of {form['username']} failed: {reply.status_code} {reply.text[-500:]}")
        return elapsed

    def cpu(self) -> tuple[float, float]:
        return cpu_seconds(self.hub_pid), cpu_seconds(self.keyservice_pid) if self.keyservice_pid else 0.0


def one_after_another(variants: list[Variant], users: list[str]) -> dict[str, dict]:
    results = {v.name: {"wall": [], "hub": 0.0, "ks": 0.0} for v in variants}
    for user in users:
        for variant in variants:  # interleaved: load that comes and goes falls on both
            session, form = variant.prepare(user)
            hub, ks = variant.cpu()
            results[variant.name]["wall"].append(variant.login(session, form))
            hub_after, ks_after = variant.cpu()
            results[variant.name]["hub"] += hub_after - hub
            results[variant.name]["ks"] += ks_after - ks
    return results


def run_together(variant: Variant, n: int, one) -> dict:
    """Run ``one(index, go)`` in ``n`` threads, each waiting on the barrier ``go`` (with the
    main thread) before its timed part: the total time from the release, and the CPU the hub
    and the key service spent meanwhile."""
    go = threading.Barrier(n + 1)
    threads = [threading.Thread(target=one, args=(i, go)) for i in range(n)]
    for thread in threads:
        thread.start()
    hub, ks = variant.cpu()
    start = time.perf_counter()
    go.wait(300)
    for thread in threads:
        thread.join()
    total = (time.perf_counter() - start) * 1000
    hub_after, ks_after = variant.cpu()
    return {"hub": hub_after - hub, "ks": ks_after - ks, "total": total}


def at_once(variant: Variant, users: list[str]) -> dict:
    prepared = [variant.prepare(user) for user in users]
    walls: list[float] = [0.0] * len(users)

    def one(index: int, go: threading.Barrier) -> None:
        go.wait()
        walls[index] = variant.login(*prepared[index])

    return {"wall": walls, **run_together(variant, len(users), one)}


def whole_flow(variant: Variant, users: list[str], kernel: str) -> dict:
    """Users at once: log in, the server starts, JupyterLab opens, a kernel starts and runs a
    cell; each user's time from pressing the button to the cell's output."""
    walls: list[float] = [0.0] * len(users)
    failures: list[str] = []

    def one(index: int, go: threading.Barrier) -> None:
        user = users[index]
        browser = Browser(variant.bed, user)
        browser.login_page()
        go.wait(300)
        start = time.perf_counter()
        try:
            password = variant.bed.users[user][0] if variant.with_code else "any password"
            page = browser.login(password=password, code=None if variant.with_code else "000000")
            if page.status_code != 200:
                raise RuntimeError(f"login: {page.status_code}")
            browser.wait_server(600)
            browser.open_lab()
            kernel_client = browser.start_kernel(kernel)
            out = kernel_client.execute("print(1)", timeout=300)
            kernel_client.close()
            if out["stdout"] != "1\n":
                raise RuntimeError(f"cell: {out}")
        except Exception as exc:  # noqa: BLE001 - counted and printed, never hidden
            failures.append(f"{user}: {exc!r}"[:300])
        walls[index] = (time.perf_counter() - start) * 1000

    measured = run_together(variant, len(users), one)
    for user in users:
        variant.bed.api("DELETE", f"users/{user}/server")
    return {"wall": walls, **measured, "failures": failures}


def row(label: str, result: dict, n: int, base: dict | None) -> str:
    wall = result["wall"]
    hub_ms = result["hub"] * 1000 / n
    ratio = f"×{statistics.median(wall) / statistics.median(base['wall']):.1f}" if base else "baseline"
    ks = f"{result['ks'] * 1000 / n:.0f}" if result["ks"] else "–"
    total = f"{result['total'] / 1000:.1f} s" if "total" in result else ""
    return (f"| {label} | {statistics.median(wall):.0f} | {min(wall):.0f}–{max(wall):.0f} | {ratio} | "
            f"{hub_ms:.0f} | {ks} | {total} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20, help="users per phase (each phase uses its own)")
    parser.add_argument("--no-flow", action="store_true", help="logins only, no servers and kernels")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the bed creates unix users and starts sshd")
    first = [f"hpcbl{n:02d}" for n in range(args.users)]
    second = [f"hpcbl{n:02d}" for n in range(args.users, 2 * args.users)]
    third = [] if args.no_flow else [f"hpcbl{n:02d}" for n in range(2 * args.users, 3 * args.users)]
    # The same flow with HPCSpawner.sandbox = "off" for these users: what the sandbox costs.
    fourth = [] if args.no_flow else [f"hpcbl{n:02d}" for n in range(3 * args.users, 4 * args.users)]
    remote_python = str(ensure_remote_python())
    venv = ensure_demo_venv()
    everyone = first + second + third + fourth
    print(f"starting two hubs ({len(everyone)} users in the key service) ...", file=sys.stderr, flush=True)
    unsandboxed = QUIET + f"""
def _sandbox_off(spawner):
    if spawner.user.name in {fourth!r}:
        spawner.sandbox = "off"
c.Spawner.pre_spawn_hook = _sandbox_off
"""
    cert_bed = HubBed(venv, remote_python, everyone, lifetime=3600, margin=60, extra_config=unsandboxed)
    # JupyterHub's SimpleLocalProcessSpawner hands internal_ssl certificates to the unix user of
    # the hub user's name: the baseline runs without it, as such a hub does.
    dummy_bed = HubBed(venv, remote_python, first[:1], lifetime=3600, margin=60, extra_config=DUMMY,
                       internal_ssl=False)
    flows = {}
    try:
        cert = Variant("SSHCertAuthenticator", cert_bed, with_code=True)
        dummy = Variant("DummyAuthenticator", dummy_bed, with_code=False)
        for variant in (cert, dummy):  # warm: the first login pays imports and template loads
            variant.login(*variant.prepare("hpcblwarm" if variant is dummy else first[0]))
        sequential = one_after_another([cert, dummy], first[1:])
        together = {v.name: at_once(v, second) for v in (dummy, cert)}
        if third:
            print(f"{len(third)} users at once: log in, server, kernel, cell ...", file=sys.stderr, flush=True)
            flows[dummy.name] = whole_flow(dummy, third, "python3")
            flows[cert.name] = whole_flow(cert, third, "cori-login-python3")
            flows["sandbox off"] = whole_flow(cert, fourth, "cori-login-python3")
    finally:
        for bed in (cert_bed, dummy_bed):
            bed.stop()
            bed.cleanup()
        shutil.rmtree("/tmp/jupyter-hpc-bench-plain", ignore_errors=True)
    n_seq, n_all = len(first) - 1, len(second)
    print(f"\n#### Hub login (form POST → redirect), {n_seq} users one after another (interleaved), "
          f"then {n_all} at once per hub\n")
    print("| variant | median ms | min–max ms | vs baseline | hub CPU ms/login | key service CPU ms/login | all done in |")
    print("|---|---:|---:|---|---:|---:|---|")
    print(row("DummyAuthenticator, one after another", sequential["DummyAuthenticator"], n_seq, None))
    print(row("SSHCertAuthenticator, one after another", sequential["SSHCertAuthenticator"], n_seq,
              sequential["DummyAuthenticator"]))
    print(row(f"DummyAuthenticator, {n_all} at once", together["DummyAuthenticator"], n_all, None))
    print(row(f"SSHCertAuthenticator, {n_all} at once", together["SSHCertAuthenticator"], n_all,
              together["DummyAuthenticator"]))
    if flows:
        n = len(third)
        print(f"\n#### {n} users at once: log in → server started → JupyterLab → kernel started → `print(1)` output\n")
        print("| variant | median ms | min–max ms | vs baseline | hub CPU ms/user | key service CPU ms/user | all done in |")
        print("|---|---:|---:|---|---:|---:|---|")
        print(row("plain JupyterHub: DummyAuthenticator, SimpleLocalProcessSpawner, local ipykernel",
                  flows["DummyAuthenticator"], n, None))
        print(row("ours: SSHCertAuthenticator, HPCSpawner, kernel on the cluster over SSH",
                  flows["SSHCertAuthenticator"], n, flows["DummyAuthenticator"]))
        print(row("ours with HPCSpawner.sandbox = 'off' (no bubblewrap)", flows["sandbox off"], n,
                  flows["DummyAuthenticator"]))
        cost = statistics.median(flows["SSHCertAuthenticator"]["wall"]) - statistics.median(flows["sandbox off"]["wall"])
        print(f"\nThe sandbox's cost, login → first cell (median, {n} users at once): {cost / 1000:+.2f} s")
        for name, flow in flows.items():
            print(f"\n{name}: {len(flow['failures'])} of {n} failed" + "".join(f"\n  {f}" for f in flow["failures"]))


if __name__ == "__main__":
    main()
