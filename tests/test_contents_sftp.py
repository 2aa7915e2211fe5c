"""The cluster's files through a real jupyter_server with SFTPContentsManager, over a real sshd.

Every check is on what a user sees: the REST answers the file browser gets, and the files
on the "cluster" as the remote user reads them there.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pwd
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from contents_bed import FilesUser, contents_server, files_sshd, files_user, server_rss, start_server  # noqa: F401
from testbed.users import NEIGHBOUR_USER


def api(server, method: str, path: str, **kwargs) -> requests.Response:
    """A REST call whose error status the test looks at (no raise)."""
    return requests.request(method, f"http://127.0.0.1:{server.port}/api/contents/{path}",
                            headers={"Authorization": f"token {server.token}"}, timeout=120, **kwargs)


def files(server, path: str, **kwargs) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{server.port}/files/{path}",
                        headers={"Authorization": f"token {server.token}"}, timeout=120, **kwargs)


def names(model: dict) -> dict[str, str]:
    return {each["name"]: each["type"] for each in model["content"]}


@pytest.fixture
def home_dir(files_user: FilesUser):
    path = files_user.folder(files_user.home)
    yield path
    files_user.run("rm", "-rf", str(path))


def test_top_level_shows_one_folder_per_root_and_listings_come_with_attributes(contents_server, files_user, home_dir):
    top = api(contents_server, "GET", "").json()
    assert names(top) == {"home": "directory", "scratch": "directory"}
    assert top["writable"] is False
    files_user.write(home_dir / "notes.txt", "hello")
    files_user.write(home_dir / "run.ipynb", json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    files_user.run("mkdir", str(home_dir / "data"))
    files_user.write(home_dir / ".hidden", "x")
    listing = api(contents_server, "GET", f"home/{home_dir.name}").json()
    assert names(listing) == {"notes.txt": "file", "run.ipynb": "notebook", "data": "directory"}
    entry = next(each for each in listing["content"] if each["name"] == "notes.txt")
    assert entry["size"] == 5 and entry["writable"] is True and entry["path"] == f"home/{home_dir.name}/notes.txt"
    expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(os.stat(home_dir / "notes.txt").st_mtime))
    assert entry["last_modified"].startswith(expected)
    assert api(contents_server, "GET", f"home/{home_dir.name}", params={"content": "0"}).json()["content"] is None
    assert api(contents_server, "GET", f"home/{home_dir.name}/nothing-here").status_code == 404


def test_a_single_root_is_the_top_level(tmp_path, files_sshd, files_user, home_dir, kernelspecs):
    server = start_server(tmp_path, files_sshd, files_user, roots={"home": "~"})
    try:
        top = api(server, "GET", "").json()
        assert home_dir.name in names(top) and "scratch" not in names(top)
        assert top["writable"] is True
    finally:
        server.stop()


def test_saves_land_on_the_cluster_as_the_remote_user(contents_server, files_user, home_dir):
    where = f"home/{home_dir.name}"
    saved = api(contents_server, "PUT", f"{where}/a.txt", json={"type": "file", "format": "text", "content": "x = 1\n"})
    assert saved.status_code == 201, saved.text
    assert files_user.read(home_dir / "a.txt") == b"x = 1\n"
    assert pwd.getpwuid(os.stat(home_dir / "a.txt").st_uid).pw_name == files_user.name
    blob = bytes(range(256)) * 10
    api(contents_server, "PUT", f"{where}/b.bin",
        json={"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()}).raise_for_status()
    assert files_user.read(home_dir / "b.bin") == blob
    got = api(contents_server, "GET", f"{where}/b.bin", params={"hash": "1"}).json()
    assert got["format"] == "base64" and base64.b64decode(got["content"]) == blob
    assert got["hash"] == hashlib.sha256(blob).hexdigest() and got["hash_algorithm"] == "sha256"

    created = api(contents_server, "POST", where, json={"type": "notebook"}).json()
    assert created["name"] == "Untitled.ipynb"
    notebook = api(contents_server, "GET", created["path"]).json()["content"]
    notebook["cells"] = [{"cell_type": "code", "source": "print('on the cluster')", "metadata": {},
                          "outputs": [], "execution_count": None, "id": "c1"}]
    api(contents_server, "PUT", created["path"], json={"type": "notebook", "content": notebook}).raise_for_status()
    on_disk = json.loads(files_user.read(home_dir / "Untitled.ipynb"))
    assert "".join(on_disk["cells"][0]["source"]) == "print('on the cluster')"
    # The checkpoint lives beside the notebook, on the cluster.
    assert (home_dir / ".ipynb_checkpoints" / "Untitled-checkpoint.ipynb").exists()
    assert not list(home_dir.glob(".~*")), "a temporary file of a save was left behind"
    # A file kept 0640 stays 0640 after a save replaced its bytes.
    files_user.run("chmod", "640", str(home_dir / "a.txt"))
    api(contents_server, "PUT", f"{where}/a.txt", json={"type": "file", "format": "text", "content": "y"}).raise_for_status()
    assert oct(os.stat(home_dir / "a.txt").st_mode & 0o777) == "0o640"


def test_rename_copy_and_delete_show_on_the_cluster(contents_server, files_user, home_dir):
    where = f"home/{home_dir.name}"
    files_user.write(home_dir / "old.txt", "keep me")
    moved = api(contents_server, "PATCH", f"{where}/old.txt", json={"path": f"{where}/new.txt"})
    assert moved.status_code == 200, moved.text
    assert not (home_dir / "old.txt").exists() and files_user.read(home_dir / "new.txt") == b"keep me"
    files_user.write(home_dir / "other.txt", "taken")
    clash = api(contents_server, "PATCH", f"{where}/new.txt", json={"path": f"{where}/other.txt"})
    assert clash.status_code == 409
    copy = api(contents_server, "POST", where, json={"copy_from": f"{where}/new.txt"}).json()
    assert copy["name"] == "new-Copy1.txt" and files_user.read(home_dir / "new-Copy1.txt") == b"keep me"
    assert api(contents_server, "DELETE", f"{where}/new.txt").status_code == 204
    assert not (home_dir / "new.txt").exists()
    folder = api(contents_server, "POST", where, json={"type": "directory"}).json()
    assert (home_dir / folder["name"]).is_dir()
    assert api(contents_server, "DELETE", folder["path"]).status_code == 204
    assert not (home_dir / folder["name"]).exists()


def test_a_folder_copies_on_the_cluster_across_roots_and_links_stay_links(contents_server, files_user, home_dir):
    where = f"home/{home_dir.name}"
    files_user.write(home_dir / "run1" / "in.txt", "input")
    files_user.write(home_dir / "run1" / "deep" / "nb.ipynb", "{}")
    files_user.run("ln", "-s", "/etc", str(home_dir / "run1" / "etc-link"))
    files_user.write(home_dir / "run1" / "job.sh", "#!/bin/sh\n")
    files_user.run("chmod", "750", str(home_dir / "run1" / "job.sh"))
    files_user.write(home_dir / "run1" / "token", "private")
    files_user.run("chmod", "600", str(home_dir / "run1" / "token"))
    scratch = files_user.folder(files_user.scratch)
    try:
        copied = api(contents_server, "POST", f"scratch/{scratch.name}", json={"copy_from": f"{where}/run1"})
        assert copied.status_code == 201, copied.text
        assert copied.json()["path"] == f"scratch/{scratch.name}/run1" and copied.json()["type"] == "directory"
        assert files_user.read(scratch / "run1" / "in.txt") == b"input"
        assert files_user.read(scratch / "run1" / "deep" / "nb.ipynb") == b"{}"
        # A script stays executable, as a copy in a shell (cp -p) or shutil.copytree keeps it.
        assert oct(os.stat(scratch / "run1" / "job.sh").st_mode & 0o777) == "0o750"
        assert oct(os.stat(scratch / "run1" / "token").st_mode & 0o777) == "0o600"
        assert os.listdir(scratch) == ["run1"], "the copy's staging folder was left behind"
        # The link is copied as a link (nothing of /etc copied), and still not followed out.
        assert (scratch / "run1" / "etc-link").is_symlink() and os.readlink(scratch / "run1" / "etc-link") == "/etc"
        assert api(contents_server, "GET", f"scratch/{scratch.name}/run1/etc-link").status_code == 403
        # Beside itself: "-Copy1"; into itself: refused, nothing made.
        again = api(contents_server, "POST", where, json={"copy_from": f"{where}/run1"})
        assert again.json()["path"] == f"{where}/run1-Copy1", again.text
        inside = api(contents_server, "POST", f"{where}/run1", json={"copy_from": f"{where}/run1"})
        assert inside.status_code == 400 and "into itself" in inside.json()["message"]
        assert sorted(os.listdir(home_dir / "run1")) == ["deep", "etc-link", "in.txt", "job.sh", "token"]
        assert not [name for name in os.listdir(home_dir) if name.endswith(".jupyter-copy")]
    finally:
        files_user.run("rm", "-rf", str(scratch))


def test_a_200_mb_file_copies_on_the_cluster_not_through_the_servers_memory(contents_server, files_user, home_dir):
    where = f"home/{home_dir.name}"
    files_user.run("dd", "if=/dev/urandom", f"of={home_dir / 'data.bin'}", "bs=1M", "count=200")
    files_user.run("chmod", "640", str(home_dir / "data.bin"))
    status = Path(f"/proc/{contents_server.process.pid}/status")
    Path(f"/proc/{contents_server.process.pid}/clear_refs").write_text("5")  # the peak (VmHWM) starts again
    before = server_rss(contents_server)
    copied = api(contents_server, "POST", where, json={"copy_from": f"{where}/data.bin"})
    peak = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    grown = peak - before
    assert copied.status_code == 201, copied.text
    assert copied.json()["name"] == "data-Copy1.bin" and copied.json()["size"] == 200 * 1024 * 1024
    digest = lambda path: files_user.run("sha256sum", str(path)).stdout.split()[0]  # noqa: E731
    assert digest(home_dir / "data-Copy1.bin") == digest(home_dir / "data.bin")
    assert grown < 50 * 1024 * 1024, f"the server's peak grew by {grown / 2**20:.0f} MB copying 200 MB"
    assert oct(os.stat(home_dir / "data-Copy1.bin").st_mode & 0o777) == "0o640"
    assert not [name for name in os.listdir(home_dir) if name.startswith(".~")], os.listdir(home_dir)


def test_another_users_file_is_403_naming_it(contents_server, files_user, home_dir):
    secret = home_dir / "theirs.txt"
    secret.write_text("not yours")
    spy = pwd.getpwnam(NEIGHBOUR_USER)
    os.chown(secret, spy.pw_uid, spy.pw_gid)
    os.chmod(secret, 0o600)
    path = f"home/{home_dir.name}/theirs.txt"
    listed = api(contents_server, "GET", f"home/{home_dir.name}").json()["content"]
    assert [each["writable"] for each in listed if each["name"] == "theirs.txt"] == [False]
    for response in (api(contents_server, "GET", path), files(contents_server, path)):
        assert response.status_code == 403, response.text
    message = api(contents_server, "GET", path).json()["message"]
    assert path in message and "Permission denied" in message
    refused = api(contents_server, "PUT", path, json={"type": "file", "format": "text", "content": "mine now"})
    assert refused.status_code == 403 and path in refused.json()["message"]
    assert secret.read_text() == "not yours"


def test_paths_and_links_stay_inside_their_root(contents_server, files_user, home_dir):
    for climbing in ("home/..%2F..%2Fetc", "home%2F..%2F..%2F..%2Fetc%2Fpasswd", "..%2Fetc"):
        response = api(contents_server, "GET", climbing)
        assert response.status_code == 404, (climbing, response.text)
        assert "root:" not in response.text
    files_user.run("ln", "-s", "/etc", str(home_dir / "etc-link"))
    files_user.run("ln", "-s", "/etc/passwd", str(home_dir / "passwd-link"))
    files_user.write(home_dir / "inside.txt", "in")
    files_user.run("ln", "-s", "inside.txt", str(home_dir / "inside-link"))
    where = f"home/{home_dir.name}"
    listing = names(api(contents_server, "GET", where).json())
    assert {"etc-link", "passwd-link", "inside-link"} <= set(listing), "links are shown"
    for link in ("etc-link", "passwd-link", "etc-link/passwd"):
        for response in (api(contents_server, "GET", f"{where}/{link}"), files(contents_server, f"{where}/{link}")):
            assert response.status_code == 403, (link, response.text)
            assert "root:" not in response.text
    assert "outside" in api(contents_server, "GET", f"{where}/etc-link").json()["message"]
    written = api(contents_server, "PUT", f"{where}/etc-link/evil", json={"type": "file", "format": "text", "content": "x"})
    assert written.status_code == 403
    assert api(contents_server, "GET", f"{where}/inside-link").json()["content"] == "in"


def test_scratch_is_reachable_from_the_top_level(contents_server, files_user):
    scratch = files_user.folder(files_user.scratch)
    try:
        path = f"scratch/{scratch.name}/out.txt"
        api(contents_server, "PUT", path, json={"type": "file", "format": "text", "content": "fast disk"}).raise_for_status()
        assert files_user.read(scratch / "out.txt") == b"fast disk"
        assert names(api(contents_server, "GET", f"scratch/{scratch.name}").json()) == {"out.txt": "file"}
    finally:
        files_user.run("rm", "-rf", str(scratch))


def sshd_descendants(daemon) -> list[int]:
    """Every process under our sshd: its per-connection monitors and their unprivileged children."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    found, frontier = [], [daemon.process.pid]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def test_sshd_killed_during_a_save_loses_nothing(contents_server, files_sshd, files_user, home_dir):
    where = f"home/{home_dir.name}"
    good = "the good version\n" * 1000
    api(contents_server, "PUT", f"{where}/big.txt", json={"type": "file", "format": "text", "content": good}).raise_for_status()
    large = "".join(random.Random(7).choice("abcdef\n") for _ in range(1000)) * 60_000  # 60 MB
    answer: dict = {}

    def save() -> None:
        answer["response"] = api(contents_server, "PUT", f"{where}/big.txt",
                                 json={"type": "file", "format": "text", "content": large})

    thread = threading.Thread(target=save)
    thread.start()
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".~big.txt.") and p.stat().st_size > 0 for p in home_dir.iterdir()):
        assert time.monotonic() < deadline and thread.is_alive(), "the save never started writing"
        time.sleep(0.005)
    sessions = sshd_descendants(files_sshd)
    for pid in sessions:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    files_sshd.stop()
    thread.join(60)
    response = answer["response"]
    assert response.status_code == 503, response.text
    assert "cannot be reached" in response.json()["message"]
    assert files_user.read(home_dir / "big.txt").decode() == good, "the old file was replaced or torn"
    files_sshd.start()
    again = api(contents_server, "PUT", f"{where}/big.txt", json={"type": "file", "format": "text", "content": "after"})
    assert again.status_code == 200, again.text
    assert files_user.read(home_dir / "big.txt") == b"after"


def test_200_mb_chunked_upload_and_streamed_download_round_trip(contents_server, files_user, home_dir):
    """JupyterLab's upload path (1 MiB chunks: 1, 2, …, -1) and the browser's Download."""
    path = f"home/{home_dir.name}/big.bin"
    chunk_size, count = 1024 * 1024, 200
    rng = random.Random(1)
    sent = hashlib.sha256()
    baseline = server_rss(contents_server)
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], server_rss(contents_server))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    session = requests.Session()
    session.headers["Authorization"] = f"token {contents_server.token}"
    url = f"http://127.0.0.1:{contents_server.port}/api/contents/{path}"
    try:
        for number in range(1, count + 1):
            data = rng.randbytes(chunk_size)
            sent.update(data)
            chunk = -1 if number == count else number
            body = {"type": "file", "format": "base64", "chunk": chunk, "name": "big.bin", "path": path,
                    "content": base64.b64encode(data).decode()}
            session.put(url, json=body, timeout=60).raise_for_status()
            if number == 1:
                assert not (home_dir / "big.bin").exists(), "a partial upload took the file's name"
        assert os.path.getsize(home_dir / "big.bin") == chunk_size * count
        received = hashlib.sha256()
        with session.get(f"http://127.0.0.1:{contents_server.port}/files/{path}", params={"download": "1"},
                         stream=True, timeout=60) as download:
            download.raise_for_status()
            assert "attachment" in download.headers["Content-Disposition"]
            for piece in download.iter_content(256 * 1024):
                received.update(piece)
    finally:
        stop.set()
        sampler.join()
    assert received.hexdigest() == sent.hexdigest()
    growth = (peak[0] - baseline) / 2**20
    assert growth < 50, f"the server's RSS grew by {growth:.0f} MB"
    assert not list(home_dir.glob(".~*")), "the upload file was left behind"
