"""A site's file roots, and the one place an API path becomes a path on the cluster.

A site names its roots as expressions (``{"home": "~", "scratch": "$SCRATCH"}``) because only
the cluster knows where they are: ``$SCRATCH`` is set by the site's login environment, and
home directories are often symlinks into a parallel file system. They are resolved once per
connection, on the remote (its environment, then SFTP ``realpath``), and kept as real paths,
so that "is this inside its root" is a prefix test on real paths.

API paths are lexical: ``..`` is folded before anything reaches the cluster and a path that
would climb above its root is refused, so no request can name a file outside the roots.
Symlinks are followed only to where the server's ``realpath`` says they lead, and that must
be inside the same root (see :meth:`Roots.contains`).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re

from tornado.web import HTTPError

from ..errors import HPCError

VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class RootConfigError(HPCError):
    """A root expression that cannot be resolved on the cluster."""


@dataclasses.dataclass(frozen=True)
class Location:
    """Where an API path lives: its root (None for the top level above several roots) and
    its remote path, lexically inside that root."""

    api_path: str
    root: str | None
    root_path: str
    remote: str

    @property
    def is_top(self) -> bool:
        return self.root is None

    @property
    def is_root(self) -> bool:
        return self.remote == self.root_path


def expand(name: str, expression: str, environment: dict[str, str]) -> str:
    """``~``, ``~/x``, ``$VAR``, ``${VAR}/x`` or an absolute path, against the remote's
    environment. A variable the cluster does not set is an error naming the root."""
    text = expression.strip()
    if text == "~" or text.startswith("~/"):
        home = environment.get("HOME")
        if not home:
            raise RootConfigError(f"The root {name!r} is {expression!r}, but HOME is not set on the cluster.")
        text = home + text[1:]

    def value(match: re.Match) -> str:
        variable = match.group("braced") or match.group("plain")
        if not environment.get(variable):
            raise RootConfigError(
                f"The root {name!r} is {expression!r}, but {variable} is not set in a login "
                f"shell on the cluster. Set {variable} there, or give the root as an absolute path."
            )
        return environment[variable]

    text = VARIABLE.sub(value, text)
    if not text.startswith("/"):
        raise RootConfigError(
            f"The root {name!r} is {expression!r}, which is {text!r} on the cluster: "
            "a root must be an absolute path, ~, or start with an environment variable."
        )
    return posixpath.normpath(text)


class Roots:
    """The resolved roots of one site: ``{name: real remote path}``, in the site's order.

    One root is shown directly at the top of the file browser; several are shown as one
    folder each (``home/``, ``scratch/``) under a read-only top level.
    """

    def __init__(self, paths: dict[str, str]) -> None:
        if not paths:
            raise RootConfigError("No root of this site could be resolved on the cluster.")
        self.paths = dict(paths)
        self.single = next(iter(self.paths.values())) if len(self.paths) == 1 else None

    def names(self) -> list[str]:
        return list(self.paths)

    def locate(self, api_path: str) -> Location:
        """The remote place of ``api_path``; 404 for a path that climbs out of its root or
        names a root that does not exist."""
        clean = api_path.strip("/")
        parts = [part for part in clean.split("/") if part not in ("", ".")]
        folded: list[str] = []
        for part in parts:
            if part == "..":
                if not folded:
                    raise HTTPError(404, f"{api_path} is outside the roots this server shows")
                folded.pop()
            else:
                folded.append(part)
        if self.single is not None:
            return Location("/".join(folded), "", self.single, posixpath.join(self.single, *folded))
        if not folded:
            return Location("", None, "", "")
        root, *rest = folded
        if root not in self.paths:
            raise HTTPError(404, f"No such file or directory: {api_path} (the top level holds {', '.join(self.paths)})")
        base = self.paths[root]
        return Location("/".join(folded), root, base, posixpath.join(base, *rest))

    def api_path(self, location: Location, remote: str) -> str:
        """The API path of ``remote``, a path inside ``location``'s root."""
        relative = posixpath.relpath(remote, location.root_path)
        relative = "" if relative == "." else relative
        if self.single is not None:
            return relative
        return posixpath.join(location.root, relative).rstrip("/") if relative else location.root

    @staticmethod
    def contains(location: Location, real: str) -> bool:
        """Whether ``real`` (a server ``realpath``) is inside ``location``'s root."""
        base = location.root_path
        return real == base or real.startswith(base.rstrip("/") + "/")
