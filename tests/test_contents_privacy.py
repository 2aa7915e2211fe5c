"""Files on the cluster keep their privacy, attacked by a neighbour on the same login node.

A neighbour (another unix user) who can write into a folder the user saves in (a group
project folder, a shared scratch) plants symlinks where a save or upload writes its hidden
file, hoping our bytes land in a file they read (or our write clobbers a file of ours they
point at). And a private notebook must not get world-readable copies or checkpoints. Each
attack is performed for real through jupyter_server's REST API over a real sshd; the controls
show the same plant working against a plain open, as an unhardened writer does it.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from contents_bed import FilesUser, contents_server, files_sshd, files_user  # noqa: F401
from test_contents_sftp import api, files, home_dir  # noqa: F401
from testbed.users import NEIGHBOUR_USER, run_as


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def as_neighbour(*argv: str):
    return run_as(NEIGHBOUR_USER, list(argv), capture_output=True, text=True)


@pytest.fixture
def shared_dir(files_user: FilesUser, home_dir: Path):
    """A folder of the user's that the neighbour may write in too (0777, no sticky bit: the
    worst case, a group folder), reachable by the neighbour."""
    opened = []
    for folder in (files_user.home, home_dir):
        opened.append((folder, mode(folder)))
        os.chmod(folder, mode(folder) | 0o001)  # the neighbour may pass through, not list
    shared = home_dir / "shared"
    files_user.run("mkdir", str(shared))
    files_user.run("chmod", "777", str(shared))
    yield shared
    for folder, bits in reversed(opened):
        os.chmod(folder, bits)


def plant_link(at: Path, target: Path) -> None:
    made = as_neighbour("ln", "-s", str(target), str(at))
    assert made.returncode == 0, made.stderr


def neighbours_loot(shared: Path) -> Path:
    """A file the neighbour owns and reads, writable by anyone: where our bytes must not land."""
    loot = shared / "loot"
    assert as_neighbour("sh", "-c", f"printf bait > {loot} && chmod 666 {loot}").returncode == 0
    return loot


def upload(server, path: str, pieces: list[bytes]) -> list:
    answers = []
    for number, data in enumerate(pieces, 1):
        chunk = -1 if number == len(pieces) else number
        answers.append(api(server, "PUT", path, json={
            "type": "file", "format": "base64", "chunk": chunk, "name": path.rsplit("/", 1)[1], "path": path,
            "content": base64.b64encode(data).decode()}))
    return answers


def test_a_planted_symlink_catches_no_upload_or_save(contents_server, files_user, home_dir, shared_dir):
    loot = neighbours_loot(shared_dir)
    # The names the unhardened upload used (and saves' 32-bit names would be guessed the same way).
    for name in (".~data.csv.jupyter-upload", ".~note.txt.jupyter-upload"):
        plant_link(shared_dir / name, loot)
    where = f"home/{home_dir.name}/shared"
    answers = upload(contents_server, f"{where}/data.csv", [b"secret,1\n", b"secret,2\n", b"secret,3\n"])
    assert all(a.ok for a in answers), [a.text for a in answers]
    assert files_user.read(shared_dir / "data.csv") == b"secret,1\nsecret,2\nsecret,3\n"
    saved = api(contents_server, "PUT", f"{where}/note.txt", json={"type": "file", "format": "text", "content": "secret"})
    assert saved.ok, saved.text
    assert loot.read_bytes() == b"bait", "our bytes landed in the neighbour's file"
    assert os.lstat(shared_dir / "data.csv").st_uid == files_user.entry.pw_uid
    # The control: a plain create-or-truncate open, as the unhardened SFTP "wb" was, follows the link.
    followed = files_user.run("python3", "-c", f"open({str(shared_dir / '.~note.txt.jupyter-upload')!r}, 'wb').write(b'leak')")
    assert followed.returncode == 0 and loot.read_bytes() == b"leak"


def test_an_upload_file_swapped_for_a_link_mid_upload_is_refused(contents_server, files_user, home_dir, shared_dir):
    """The neighbour sees the upload's hidden file after its first chunk (the folder lists), and
    in a folder without the sticky bit can replace it: the next chunk refuses to write."""
    loot = neighbours_loot(shared_dir)
    path = f"home/{home_dir.name}/shared/big2.bin"
    assert api(contents_server, "PUT", path, json={
        "type": "file", "format": "base64", "chunk": 1, "name": "big2.bin", "path": path,
        "content": base64.b64encode(b"first chunk").decode()}).ok
    hidden = [p for p in shared_dir.iterdir() if p.name.startswith(".~big2.bin.") and p.name.endswith(".jupyter-upload")]
    assert len(hidden) == 1, list(shared_dir.iterdir())
    assert len(hidden[0].name) >= len(".~big2.bin.") + 32 + len(".jupyter-upload")  # 128 bits: not guessable
    assert mode(hidden[0]) == 0o600 and os.lstat(hidden[0]).st_uid == files_user.entry.pw_uid
    assert as_neighbour("rm", "-f", str(hidden[0])).returncode == 0
    plant_link(hidden[0], loot)
    refused = api(contents_server, "PUT", path, json={
        "type": "file", "format": "base64", "chunk": -1, "name": "big2.bin", "path": path,
        "content": base64.b64encode(b"last chunk").decode()})
    assert refused.status_code == 409 and "tampered" in refused.json()["message"], refused.text
    assert loot.read_bytes() == b"bait"
    assert not (shared_dir / "big2.bin").exists()
    # A later chunk with no upload file (never started, or the server restarted) says so.
    orphan = f"home/{home_dir.name}/shared/orphan.bin"
    gone = api(contents_server, "PUT", orphan, json={"type": "file", "format": "base64", "chunk": 2, "name": "orphan.bin",
                                                     "path": orphan, "content": base64.b64encode(b"x").decode()})
    assert gone.status_code == 409 and "upload it again" in gone.json()["message"], gone.text


def test_a_private_notebook_keeps_private_copies_and_checkpoints(contents_server, files_user, home_dir):
    where = f"home/{home_dir.name}"
    notebook = home_dir / "private.ipynb"
    files_user.write(notebook, '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    files_user.run("chmod", "600", str(notebook))
    files_user.write(home_dir / "private.txt", "diary")
    files_user.run("chmod", "600", str(home_dir / "private.txt"))
    checkpoint = api(contents_server, "POST", f"{where}/private.ipynb/checkpoints")
    assert checkpoint.status_code == 201, checkpoint.text
    assert mode(home_dir / ".ipynb_checkpoints" / "private-checkpoint.ipynb") == 0o600
    copied = api(contents_server, "POST", where, json={"copy_from": f"{where}/private.ipynb"})
    assert copied.status_code == 201, copied.text
    copy = home_dir / copied.json()["name"]
    assert mode(copy) == 0o600, oct(mode(copy))
    assert mode(home_dir / ".ipynb_checkpoints" / f"{copy.stem}-checkpoint.ipynb") == 0o600
    text_copy = api(contents_server, "POST", where, json={"copy_from": f"{where}/private.txt"})
    assert mode(home_dir / text_copy.json()["name"]) == 0o600
    # A save keeps the mode too; a new file gets the login's umask (022 here: 0644).
    saved = api(contents_server, "PUT", f"{where}/private.txt", json={"type": "file", "format": "text", "content": "more"})
    assert saved.ok and mode(home_dir / "private.txt") == 0o600
    api(contents_server, "PUT", f"{where}/public.txt", json={"type": "file", "format": "text", "content": "hi"}).raise_for_status()
    assert mode(home_dir / "public.txt") == 0o644
    assert not list(home_dir.glob(".~*")), "a temporary file was left behind"


def test_a_file_above_max_content_mb_is_refused_pointing_at_the_download(contents_server, files_user, home_dir):
    big = home_dir / "huge.bin"
    files_user.run("truncate", "-s", "101M", str(big))  # sparse: no 101 MB written
    path = f"home/{home_dir.name}/huge.bin"
    for params in ({}, {"content": "1"}, {"hash": "1", "content": "0"}):
        refused = api(contents_server, "GET", path, params=params)
        assert refused.status_code == 413, (params, refused.status_code)
        message = refused.json()["message"]
        assert message.startswith("huge.bin is 101 MB") and "max_content_mb" in message, message
        assert "Download" in message and "/files/" in message and "100 MB" in message, message
    assert api(contents_server, "GET", path, params={"content": "0"}).json()["size"] == 101 * 2**20
    with files(contents_server, path, stream=True) as streamed:  # the download streams it
        assert streamed.status_code == 200 and len(next(streamed.iter_content(65536))) > 0
