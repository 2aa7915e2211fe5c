"""Which transport a remote kernel listens on, and why: one rule for the provisioner and doctor.

A kernel asks (its kernelspec's ``metadata.jupyter_hpc.transport``, else the provisioner's
``remote_transport``), the site answers (whether its sshd forwards to Unix sockets, learnt
once per connection from a socket the launcher binds), and plaintext needs the site's word
(``allow_plaintext_loopback``): a login node is shared, and a kernel on its 127.0.0.1 without
encryption can be read and driven by every user there.
"""

from __future__ import annotations

from ..errors import TransportRefusedError

#: What ``remote_transport`` may be, and a kernelspec's metadata.jupyter_hpc.transport (but 'auto').
TRANSPORTS = ("auto", "ipc", "tcp-curve", "tcp")


def choose_transport(
    wanted: str, who: str, stream_local: bool | None, *, curve: bool, allow_plaintext: bool, host: str, kernel: str
) -> tuple[str, str]:
    """``("ipc" | "tcp-curve" | "tcp", why)`` for a kernel that asks for ``wanted`` (``who``
    asks: a setting's name), where ``stream_local`` is the site's known answer (None: not yet
    probed) and ``curve`` whether CurveZMQ keys can be made; or TransportRefusedError saying
    which setting to change."""
    if wanted in ("auto", "ipc") and stream_local is not False:
        return "ipc", ("Unix sockets in a 0700 directory, forwarded over SSH: no one else on the node can connect"
                       + ("" if stream_local else " (the first kernel's launcher checks the site forwards to them)"))
    refused = "the site's sshd refuses forwarding to Unix sockets (AllowStreamLocalForwarding no)"
    if wanted == "ipc":
        raise TransportRefusedError(
            f"{host} does not allow forwarding to Unix sockets (sshd AllowStreamLocalForwarding no), and "
            f"kernel {kernel}'s {who} is 'ipc'. Set it to 'auto' or 'tcp-curve' for encrypted TCP."
        )
    if wanted == "tcp":
        if not allow_plaintext:
            raise TransportRefusedError(
                f"Kernel {kernel} asks for plain TCP ({who} = 'tcp'): it would listen on {host}'s 127.0.0.1 "
                "unencrypted, where every user of that shared node could read and drive it. Kernels that "
                f"need it: {kernel}. If the login node is not shared, set allow_plaintext_loopback = True for "
                "this site; if the kernel speaks CurveZMQ, use 'tcp-curve' instead."
            )
        return "tcp", f"{who} asks for plain TCP and allow_plaintext_loopback is on: anyone on {host} can read it"
    if curve:
        return "tcp-curve", (f"{who} asks for it" if wanted == "tcp-curve" else refused) + (
            f": {host}'s 127.0.0.1 with CurveZMQ, where others can connect but read nothing")
    if wanted == "auto" and allow_plaintext:
        return "tcp", f"{refused} and CurveZMQ is unavailable; allow_plaintext_loopback is on: anyone on {host} can read it"
    raise TransportRefusedError(
        f"Kernel {kernel} would listen on {host}'s 127.0.0.1 "
        + ("with CurveZMQ" if wanted == "tcp-curve" else "(the site allows no Unix-socket forwarding)")
        + ", but CurveZMQ is unavailable here, so it would be in plaintext, where every user of that node "
        "could read its traffic. Install a pyzmq with CurveZMQ, ask the site to allow stream-local "
        "forwarding, or (only on a login node that is not shared) set allow_plaintext_loopback = True."
    )


def spec_transport(metadata: object) -> str | None:
    """A kernelspec's own choice (``metadata.jupyter_hpc.transport``), if it makes a valid one."""
    ours = metadata.get("jupyter_hpc") if isinstance(metadata, dict) else None
    choice = ours.get("transport") if isinstance(ours, dict) else None
    if isinstance(choice, str) and choice.lower() in TRANSPORTS and choice.lower() != "auto":
        return choice.lower()
    return None
