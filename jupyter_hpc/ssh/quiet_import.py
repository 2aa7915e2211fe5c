"""asyncssh, imported without cryptography's DSA deprecation warnings.

asyncssh names ``dsa.DSAPrivateKey`` and friends in annotations evaluated at import, and
cryptography (≥ 43) warns on each access: five ``CryptographyDeprecationWarning: DSA is
deprecated`` lines, about a key type jupyter_hpc never uses, in every server log, script and
terminal. Every module of jupyter_hpc gets asyncssh from here (``from ..ssh.quiet_import import
asyncssh``), so the filter is in place before the first import wherever that happens.

The filter is narrow: only that message, only when raised from asyncssh's own modules. A DSA
deprecation in a user's code or any other library still shows.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

DSA_WARNING = "DSA is deprecated"

# filterwarnings drops an identical filter before inserting, so importing this twice (a reload)
# leaves one entry.
warnings.filterwarnings("ignore", message=DSA_WARNING, module=r"asyncssh(\.|$)")

# asyncssh looks for liboqs (post-quantum key exchange) with ctypes.util.find_library, which on
# Linux, for a library ldconfig does not know, goes on to link a test program with gcc and then
# ld: about 20 ms of a script's first kernel where a compiler is installed (a third of the rest of
# asyncssh's import). During this import only, and unless LD_LIBRARY_PATH or LIBRARY_PATH point
# elsewhere, those two names are looked up in ldconfig's cache alone, as find_library does first.
_OQS = ("oqs", "liboqs")


@contextlib.contextmanager
def _liboqs_from_ldconfig_only() -> Iterator[None]:
    import ctypes.util

    original = ctypes.util.find_library
    ldconfig = getattr(ctypes.util, "_findSoname_ldconfig", None)
    if not sys.platform.startswith("linux") or ldconfig is None or os.environ.get("LD_LIBRARY_PATH") \
            or os.environ.get("LIBRARY_PATH"):
        yield
        return

    def find_library(name: str) -> str | None:
        return ldconfig(name) if name in _OQS else original(name)

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = original


with _liboqs_from_ldconfig_only():
    import asyncssh  # noqa: E402 (after the filter, which is this module's reason to exist)

__all__ = ["asyncssh"]
