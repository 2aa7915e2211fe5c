"""Headers as they cross the route, both ways.

Towards the web UI: hop-by-hop headers go, ``Host`` becomes ``host:port``, the Jupyter
server's own credentials never leave (its token in ``Authorization``, its login and XSRF
cookies, JupyterHub's cookies), and ``X-Forwarded-*`` say where the app is mounted.

Back to the browser: a redirect to the app's own paths (``/x``, ``http://host:port/x``) stays
under the route; a cookie's ``Path`` is put under the route and its ``Domain`` dropped, so
that an app's cookies neither leak to nor clash with the server's.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import urlsplit, urlunsplit

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-authenticate",
})
# Cookies of the server itself (jupyter_server's login cookie, its XSRF cookie) and of the hub:
# never sent on to a web UI, which anyone on the login node may have started.
SERVER_COOKIE_PREFIXES = ("username-", "jupyterhub-", "_xsrf")


def is_server_cookie(name: str, server_cookie_names: frozenset[str] = frozenset()) -> bool:
    return name in server_cookie_names or name.startswith(SERVER_COOKIE_PREFIXES)


def filtered_cookie_header(value: str, server_cookie_names: frozenset[str] = frozenset()) -> str:
    """The ``Cookie`` header without the server's and the hub's cookies."""
    kept = []
    for part in value.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and not is_server_cookie(name, server_cookie_names):
            kept.append(part.strip())
    return "; ".join(kept)


def upstream_headers(headers: list[tuple[str, str]], *, host: str, port: int, prefix: str,
                     origin: str, proto: str, server_cookie_names: frozenset[str] = frozenset(),
                     websocket: bool = False) -> list[tuple[str, str]]:
    """The request's headers as the web UI gets them (``prefix``: the route to this host:port,
    ``origin``: the server's own, e.g. ``http://127.0.0.1:8888``)."""
    out: list[tuple[str, str]] = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP and not (websocket and lower in ("upgrade", "connection")):
            continue
        if lower in ("host", "x-forwarded-prefix", "x-forwarded-context", "x-proxycontextpath"):
            continue
        if lower == "authorization" and value.split(" ", 1)[0].lower() in ("token", "bearer"):
            continue  # the Jupyter server's (or hub's) token
        if lower == "cookie":
            value = filtered_cookie_header(value, server_cookie_names)
            if not value:
                continue
        if lower == "origin" and value.rstrip("/") == origin:
            value = f"http://{host}:{port}"  # checked same-origin here; the app sees its own
        out.append((name, value))
    out.insert(0, ("Host", f"{host}:{port}"))
    out += [("X-Forwarded-Prefix", prefix), ("X-Forwarded-Context", prefix), ("X-ProxyContextPath", prefix),
            ("X-Forwarded-Proto", proto), ("X-Forwarded-Host", urlsplit(origin).netloc)]
    if not websocket:
        out.append(("Connection", "close"))  # one channel per request
    return out


def rewrite_location(value: str, *, host: str, port: int, prefix: str) -> str:
    """A redirect's target: the app's own absolute paths and URLs stay under the route."""
    parts = urlsplit(value)
    if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc:
        own = {f"{host}:{port}".lower(), f"[{host}]:{port}".lower()}
        if parts.netloc.lower() not in own and not (parts.netloc.lower() == host.lower() and port == 80):
            return value  # elsewhere: the browser goes there itself
        return urlunsplit(("", "", prefix + (parts.path or "/"), parts.query, parts.fragment))
    if value.startswith("/") and not value.startswith("//"):
        return prefix + value
    return value  # relative: already under the route


def rewrite_set_cookie(value: str, *, prefix: str) -> str:
    """A ``Set-Cookie`` with its ``Path`` under the route and no ``Domain``."""
    head, *attributes = [part.strip() for part in value.split(";")]
    kept = [head]
    path = "/"
    for attribute in attributes:
        key = attribute.split("=", 1)[0].strip().lower()
        if key == "domain":
            continue
        if key == "path":
            path = attribute.split("=", 1)[1].strip() if "=" in attribute else "/"
            continue
        kept.append(attribute)
    if not path.startswith("/"):
        path = "/" + path
    kept.append(f"Path={prefix.rstrip('/')}{path}" if path != "/" else f"Path={prefix.rstrip('/')}/")
    return "; ".join(kept)


def cookie_names(value: str) -> list[str]:
    cookie = SimpleCookie()
    try:
        cookie.load(value)
    except Exception:  # noqa: BLE001 - a header we cannot parse names nothing
        return []
    return list(cookie)
