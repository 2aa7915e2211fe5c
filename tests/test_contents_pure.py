"""The contents manager's fast paths give what the slow ones give: the READDIR reply parser
against asyncssh's own decoder (every attribute combination SFTP v3 allows, not only the one
OpenSSH sends), and the cached mimetype against ``mimetypes.guess_type``."""

from __future__ import annotations

import itertools
import mimetypes
import struct

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
