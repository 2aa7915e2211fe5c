"""No SSH_MSG_IGNORE packet before each data packet where the cipher does not need one.

asyncssh sends an empty ``SSH_MSG_IGNORE`` before every packet it encrypts: RFC 4251 §9.3.1's
countermeasure against the chosen-plaintext attack on CBC mode, where a packet's IV is the
previous packet's last block. With CTR, AES-GCM or chacha20-poly1305 (what asyncssh and OpenSSH
negotiate first) there is nothing to counter, and OpenSSH sends none. Each ignore packet still
costs a padding read from ``os.urandom``, an encryption here, a decryption and a dispatch in
sshd: on a forwarded ZMQ message of a few hundred bytes, about as much as the message itself.

:func:`skip_ignore_packets` drops them on one connection while its send cipher is not CBC,
checked at every packet (a rekey may change the cipher). Data packets, their sequence numbers
and everything else asyncssh sends are unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("jupyter_hpc.ssh")

MSG_IGNORE = 2  # RFC 4253 §11.2
_EMPTY = b"\0\0\0\0"  # the SSH string b"" that asyncssh's inserted ignore packet carries


def needs_ignore_packets(cipher: str | None) -> bool:
    """Whether a send cipher (asyncssh's ``send_cipher`` name) needs RFC 4251's ignore packets:
    CBC modes only. Unknown (None): keep them."""
    return cipher is None or "cbc" in cipher.lower()


def skip_ignore_packets(conn: Any) -> bool:
    """Stop asyncssh inserting an empty ignore packet before each packet on ``conn`` while its
    send cipher is not CBC. Works on an asyncssh connection whose ``send_packet`` inserts it by
    calling itself (asyncssh 2.x); False, and nothing changed, where there is no such method."""
    send_packet = getattr(conn, "send_packet", None)
    if send_packet is None or getattr(send_packet, "skips_ignore_packets", False):
        return False

    def send_packet_without_ignore(pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY,) and not needs_ignore_packets(conn.get_extra_info("send_cipher")):
            return
        send_packet(pkttype, *args, handler=handler)

    send_packet_without_ignore.skips_ignore_packets = True  # type: ignore[attr-defined]
    conn.send_packet = send_packet_without_ignore  # the instance's attribute: asyncssh's own call finds it
    return True
