"""The contents manager's fast paths give what the slow ones give: the READDIR reply parser
against asyncssh's own decoder (every attribute combination SFTP v3 allows, not only the one
OpenSSH sends), and the cached mimetype against ``mimetypes.guess_type``."""

from __future__ import annotations

import itertools
import os
import mimetypes
import struct

import asyncssh
import pytest
from asyncssh.packet import SSHPacket
from asyncssh.sftp import SFTPAttrs, SFTPName

from jupyter_hpc.contents.manager import _mimetype
from jupyter_hpc.contents.readdir import Listed, parse_names


def names_reply(names: list[SFTPName]) -> bytes:
    """An SSH_FXP_NAME payload of SFTP version 3, encoded by asyncssh."""
    return struct.pack(">I", len(names)) + b"".join(name.encode(3) for name in names)


ATTRIBUTES = {
    "size": 123456789012, "uid": 1001, "gid": 1002, "permissions": 0o100644,
    "atime": 1_700_000_000, "mtime": 1_700_000_123,
}


@pytest.mark.parametrize("present", [
    combination for count in range(0, 5)
    for combination in itertools.combinations(("size", "ids", "permissions", "times"), count)
])
@pytest.mark.parametrize("extended", [False, True])
def test_parse_names_agrees_with_asyncssh_for_every_attribute_combination(present, extended):
    fields = {}
    if "size" in present:
        fields["size"] = ATTRIBUTES["size"]
    if "ids" in present:
        fields.update(uid=ATTRIBUTES["uid"], gid=ATTRIBUTES["gid"])
    if "permissions" in present:
        fields["permissions"] = ATTRIBUTES["permissions"]
    if "times" in present:
        fields.update(atime=ATTRIBUTES["atime"], mtime=ATTRIBUTES["mtime"])
    if extended:
        fields["extended"] = [(b"vendor@example.com", b"value"), (b"other@example.com", b"")]
    sent = [SFTPName("naïve é.txt".encode(), b"-rw-r--r-- 1 u g 1 Jan 1 00:00 x", SFTPAttrs(**fields)),
            SFTPName(b"second", b"", SFTPAttrs(**fields)),
            SFTPName(b"\xff-not-utf8", b"", SFTPAttrs(permissions=0o040755, size=4096))]
    reply = names_reply(sent)
    theirs = [SFTPName.decode(packet, 3) for packet in [SSHPacket(reply[4:])] for _ in sent]
    ours = parse_names(reply)
    assert ours == [Listed(n.filename, n.attrs.size, n.attrs.uid, n.attrs.gid, n.attrs.permissions,
                           n.attrs.mtime) for n in theirs]
    assert ours[0].filename == "naïve é.txt".encode()


def test_parse_names_refuses_a_truncated_reply():
    reply = names_reply([SFTPName(b"file", b"", SFTPAttrs(size=1, uid=1, gid=1, permissions=0o100600,
                                                           atime=1, mtime=2))])
    with pytest.raises(Exception):
        parse_names(reply[:-3])


NAMES = [
    "a.txt", "notes.md", "a.tar.gz", "x.y.tar.gz", "arch.tar.bz2", "x.tgz", "a.gz", "x.ipynb.gz", "n.svgz",
    "README", "Makefile", "a.b.c.py", ".bashrc", ".config.json", "..py", "...", ".", "a..b", "a.", "x..gz",
    "data:x.txt", "a:b.txt", "file.TXT", "IMG.JPG", "page.HTML", "a.b.json", "run.sh", "lib.so.1",
    "table.csv", "pic.png", "doc.pdf", "archive.zip", "unknown.zzz", "two.zzz.gz", "é.txt", " .txt",
]


@pytest.mark.parametrize("name", NAMES)
def test_cached_mimetype_is_what_mimetypes_says(name):
    assert _mimetype(name) == mimetypes.guess_type(name)[0]
    assert _mimetype(name) == mimetypes.guess_type(name)[0]  # and again, from the cache


class _AnyKey(asyncssh.SSHServer):
    def begin_auth(self, username):
        return False  # no authentication: a loopback server of this test's own


@pytest.mark.parametrize("version", [3, 4])
async def test_read_directory_against_asyncssh_sftp_server_agrees_with_readdir(tmp_path, version):
    """asyncssh's SFTP server (the demo's embedded login node serves files with it) sends its
    own attribute flags; the fast path (SFTP v3) and the fallback (v4: asyncssh's readdir)
    read the same entries as asyncssh's readdir, in a folder of more names than one reply
    holds, with a link, a folder and a non-UTF-8 name."""
    from jupyter_hpc.contents.readdir import _fast_path, read_directory

    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(523):
        (folder / f"f-{number:04d}.txt").write_bytes(b"x" * number)
    (folder / "sub").mkdir()
    (folder / "link").symlink_to("f-0001.txt")
    (folder / os.fsdecode(b"\xff-raw")).write_bytes(b"")
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(_AnyKey, "127.0.0.1", 0, server_host_keys=[key], sftp_factory=True,
                                         sftp_version=version)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncssh.connect("127.0.0.1", port, username="test", known_hosts=None,
                                    client_keys=None) as connection:
            async with connection.start_sftp_client(sftp_version=version) as sftp:
                assert (_fast_path(sftp) is not None) == (version == 3), "which path this compares"
                path = str(folder).encode()
                ours = await read_directory(sftp, path)
                theirs = await sftp.readdir(path)
    finally:
        server.close()
    expected = sorted(Listed(n.filename, n.attrs.size, n.attrs.uid, n.attrs.gid, n.attrs.permissions,
                             n.attrs.mtime) for n in theirs)
    assert sorted(ours) == expected
    assert len(ours) == 523 + 3 + 2  # with . and ..
    assert {b"sub", b"link", b"\xff-raw", b"f-0522.txt"} <= {entry.filename for entry in ours}
