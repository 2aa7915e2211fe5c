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

import warnings

DSA_WARNING = "DSA is deprecated"

# filterwarnings drops an identical filter before inserting, so importing this twice (a reload)
# leaves one entry.
warnings.filterwarnings("ignore", message=DSA_WARNING, module=r"asyncssh(\.|$)")

import asyncssh  # noqa: E402 (after the filter, which is this module's reason to exist)

__all__ = ["asyncssh"]
