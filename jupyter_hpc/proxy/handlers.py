"""The route ``{base_url}jupyter-hpc/proxy/<site>/<host>:<port>/<path>``: HTTP and websockets
to a web UI on the cluster, over the user's pooled SSH connection to ``<site>``.

Every request is authenticated as any jupyter_server handler is (the hub's single-user
identity provider lets only the server's owner, and whoever JupyterHub's ``access:servers``
scopes name, through), HTTP and websocket alike: the websocket upgrade is an ordinary GET of
this handler, so it cannot skip authentication (jupyter-server-proxy's GHSA-w3vc-fx9p-wp4v).
Against CSRF, a cookie-authenticated request other than GET/HEAD/OPTIONS, and every cookie-
authenticated websocket, must come from the server's own origin (``Origin``, else
``Referer``); Jupyter's ``_xsrf`` is not asked for, since the apps behind the route (Bokeh,
TensorBoard) post from their own pages without it.

HTTP is streamed both ways and never held whole: the request body goes on as tornado reads it
(``stream_request_body``), the response goes out chunk by chunk as SSH delivers it, each step
waiting for the other side's flow control. HTTP/1.1 framing towards the app is h11's. A
websocket is spliced: after the upgrade the handler detaches the browser's connection and
copies bytes both ways, so subprotocols, extensions and pings pass untouched.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import h11
from jupyter_server._tz import utcnow
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.escape import url_unescape, xhtml_escape
from tornado.iostream import StreamClosedError
from traitlets import Float, validate
from traitlets.config import Configurable

from ..errors import HPCError
from ..sites import HPCSites
from .. import kernel_links as links
from .channel import READ_SIZE, ProxyConnectError, RemoteStream
from .hosts import AllowedHosts, HostNotAllowed, normal_host
from .node_probe import probe_kernel
from .rewrite import HOP_BY_HOP, rewrite_location, rewrite_set_cookie, upstream_headers

ROUTE = re.compile(r"^(?P<prefix>.*?/jupyter-hpc/proxy/(?P<site>[^/]+)/(?P<host>[^/]+):(?P<port>\d+))(?P<path>/.*)?$")
MAX_HEAD = 64 * 1024
REFUSED_BODY_READ = 1 << 20  # bytes of a refused request's body read (and dropped) before answering


class HPCProxy(Configurable):
    """Timeouts of the web-UI proxy (``c.HPCProxy.<name>``)."""

    connect_timeout = Float(
        10.0, config=True,
        help="Seconds to wait for the web UI's host to accept the connection (as the login node "
        "sees it) before answering 504 with a page saying so.",
    )
    idle_timeout = Float(
        300.0, config=True,
        help="Seconds an HTTP request may go without a byte either way before it is ended.",
    )
    websocket_idle_timeout = Float(
        3600.0, config=True,
        help="Seconds a proxied websocket may go without a byte either way before it is closed.",
    )

    @validate("connect_timeout", "idle_timeout", "websocket_idle_timeout")
    def _positive(self, proposal: dict) -> float:
        if not float(proposal["value"]) > 0:
            raise ValueError(f"{proposal['trait'].name} must be a positive number of seconds")
        return float(proposal["value"])


ERROR_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{status} {reason} - cluster proxy</title></head>
<body style="font-family: sans-serif; max-width: 45em; margin: 3em auto">
<h1>{reason}</h1>
<p>{message}</p>
<p style="color: #666">HTTP {status} from the Jupyter server's cluster proxy (jupyter-hpc).</p>
</body></html>
"""

# How each way of failing reads to the user: (status, reason, what to try).
FAILURES = {
    "refused": (502, "Nothing listens there", "Nothing is listening on {where} (as seen from the login node "
                "{login}). Check that the web UI is running and which port it printed; it may also have "
                "ended with its kernel or job."),
    "unreachable": (502, "Host unreachable", "The login node {login} cannot reach {where}. Check that the "
                    "host name is a node of a running job, and that the job has not ended (squeue)."),
    "timeout": (504, "No answer", "{where} did not answer from the login node {login} in time. The node may "
                "be down, or a firewall drops the connection; check the job (squeue) and try again."),
    "ssh": (503, "Site unreachable", "The SSH connection to the site could not be made: {detail} Reload "
            "this page to try again."),
    "dropped": (502, "Connection dropped", "The SSH connection to {login} dropped while reaching {where}. "
                "It reconnects on the next request: reload this page."),
    "idle": (504, "Timed out", "{where} sent nothing for too long (c.HPCProxy.idle_timeout). Reload to try "
             "again; a slow app may need a longer idle_timeout."),
}


@web.stream_request_body
class ProxyHandler(JupyterHandler):
    """One request (or websocket) to a web UI on the cluster, through its own SSH channel."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    upstream: RemoteStream | None = None
    websocket = False
    refusal: web.HTTPError | None = None
    pending_head = b""  # a request's head, held back to go out with the first piece of its body

    # -- authentication, CSRF, which host --------------------------------------------------

    def check_xsrf_cookie(self) -> None:
        """Cookie-authenticated writes must come from this server's own pages (Origin, else
        Referer); a token-authenticated script needs neither. No ``_xsrf`` is asked for."""
        if not hasattr(self, "_jupyter_current_user"):
            return  # before authentication; prepare() asks again
        if self.token_authenticated or self.settings.get("disable_check_xsrf", False):
            return
        if not self.same_origin():
            raise web.HTTPError(
                403, "%s", "Refused a cross-origin request to the cluster proxy: a cookie-authenticated "
                f"{self.request.method} must come from this server's own pages (Origin or Referer).",
            )

    def same_origin(self) -> bool:
        origin = self.request.headers.get("Origin")
        if origin:
            return self.check_origin(origin) and (self.allow_origin or urlsplit(origin).netloc == self.request.host
                                                  or bool(self.allow_origin_pat))
        if self.request.headers.get("Referer"):
            return self.check_referer()
        return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A plain page that says what went wrong and what to try (never a stack trace)."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        message = ""
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(ERROR_PAGE.format(status=status_code, reason=xhtml_escape(self._reason),
                                      message=xhtml_escape(message or self._reason)))

    def compute_etag(self) -> None:
        return None  # the app's own ETag, if any, passes through

    def finish(self, chunk: Any = None) -> Any:
        body = getattr(self.request, "_body_future", None)
        if not self._headers_written and body is not None and not body.done():
            # Answered before the request's body was read (refused or redirected while being
            # prepared): tornado closes the connection after this response, so say so. A
            # keep-alive client (JupyterHub's proxy) would otherwise send its next request into
            # the closing connection and answer it with a 503 of its own.
            self.set_header("Connection", "close")
        return super().finish(chunk)

    def proxy_settings(self) -> HPCProxy:
        settings = self.settings.get("jupyter_hpc_proxy")
        if settings is None:
            settings = self.settings["jupyter_hpc_proxy"] = HPCProxy(parent=self.serverapp)
        return settings

    def allowed_hosts(self) -> AllowedHosts:
        return self.settings.setdefault("jupyter_hpc_proxy_hosts", AllowedHosts())

    def resolve_site(self, name: str):
        """The site's SSH target and ``proxy_hosts``: a configured site, else a running
        kernel's login node by its ``user@host:port`` (hand-written kernelspecs)."""
        sites = self.settings.get("jupyter_hpc_sites")
        if sites is None:
            sites = self.settings["jupyter_hpc_sites"] = HPCSites(parent=self.serverapp)
        if name in sites.sites:
            parsed = self.settings.setdefault("jupyter_hpc_parsed_sites", {})
            site = parsed.get(name)
            if site is None:
                site = parsed[name] = sites.site(name)  # checked once, not per request
            return site.ssh_target(), site.proxy_hosts
        for _, provisioner in self.site_kernels(name):
            return provisioner.ssh_target(), ()
        known = ", ".join(sites.sites) or "none"
        raise web.HTTPError(404, "%s", f"No site named {name!r} for the cluster proxy. Configured sites: {known}.")

    def site_kernels(self, name: str):
        """(kernel id, provisioner) of each running kernel of ``name``'s site."""
        for kernel_id, km in list(getattr(self.kernel_manager, "_kernels", {}).items()):
            provisioner = getattr(km, "provisioner", None)
            if provisioner is None or not hasattr(provisioner, "ssh_target"):
                continue
            try:
                if links.kernel_site(provisioner) == name:
                    yield kernel_id, provisioner
            except (HPCError, ValueError):
                continue

    async def kernel_node_names(self, site: str) -> set[str]:
        names: set[str] = set()
        for kernel_id, provisioner in list(self.site_kernels(site)):
            facts = await probe_kernel(kernel_id, provisioner.parent)
            if facts:
                names.update(str(n) for n in (facts.get("node"), facts.get("hostname"), facts.get("fqdn")) if n)
                names.update(facts.get("addresses") or [])
        return {normal_host(n) for n in names}

    async def prepare(self) -> None:  # type: ignore[override]
        try:
            await self.checked_prepare()
        except web.HTTPError as exc:
            if not self.small_body():
                raise
            # Refused before the body was read: answer after reading it, or the browser's
            # connection is reset (unread data) and it never sees the page saying why.
            self.refusal = exc

    def small_body(self) -> bool:
        length = self.request.headers.get("Content-Length", "")
        return length.isdigit() and 0 < int(length) <= REFUSED_BODY_READ

    async def checked_prepare(self) -> None:
        await super().prepare()
        if self._finished:
            return
        # jupyter_server lets a handler without a rule through unauthenticated
        # (allow_unauthenticated_access): this one demands a user on every method, the
        # websocket upgrade included. GET/HEAD go to the login page, the rest get 403.
        web.authenticated(lambda handler: None)(self)
        if self._finished:
            return
        if not self.authorizer.is_authorized(self, self.current_user, "execute", "kernels"):
            raise web.HTTPError(403, "%s", "You may not reach web UIs on the cluster from this server "
                                "(it takes the right to execute kernels).")
        self.settings["api_last_activity"] = utcnow()
        match = ROUTE.match(self.request.path)
        if match is None:
            raise web.HTTPError(404)
        self.prefix = match["prefix"]
        self.site = url_unescape(match["site"])
        self.host = url_unescape(match["host"])
        self.port = int(match["port"])
        self.path = match["path"]
        if not 0 < self.port < 65536:
            raise web.HTTPError(400, "%s", f"Port {self.port} is not a TCP port (1-65535).")
        if self.path is None:
            if self.request.method in ("GET", "HEAD"):
                query = f"?{self.request.query}" if self.request.query else ""
                self.redirect(self.request.path + "/" + query)
                return
            self.path = "/"
        self.websocket = (self.request.method == "GET"
                          and self.request.headers.get("Upgrade", "").lower() == "websocket")
        if self.websocket and not self.token_authenticated and not self.same_origin():
            raise web.HTTPError(403, "%s", "Refused a cross-origin websocket to the cluster proxy: it must "
                                "come from this server's own pages.")
        self.target, patterns = self.resolve_site(self.site)
        try:
            await self.allowed_hosts().check(self.site, self.target, self.host, patterns,
                                             lambda: self.kernel_node_names(self.site))
        except HostNotAllowed as exc:
            self.log.warning("Cluster proxy: refused %s:%s on %s", self.host, self.port, self.site)
            raise web.HTTPError(403, "%s", str(exc), reason="Host not allowed") from None
        if not self.websocket:
            self.h11 = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
            head = self.h11.send(h11.Request(method=self.request.method, target=self.upstream_target(),
                                             headers=self.upstream_headers()))
            if self.request.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.request.headers:
                self.pending_head = head  # goes out with the first piece of the body, which follows it
                head = b""
            await self.open_upstream(first=head)

    # -- the channel ------------------------------------------------------------------------

    def fail(self, exc: ProxyConnectError) -> web.HTTPError:
        status, reason, advice = FAILURES.get(exc.kind, FAILURES["dropped"])
        text = advice.format(where=f"{self.host}:{self.port}", login=self.target.host, detail=exc.message)
        self.log.info("Cluster proxy %s:%s on %s: %s (%s)", self.host, self.port, self.site, exc, exc.kind)
        return web.HTTPError(status, "%s", f"{text} ({exc.message})", reason=reason)

    async def open_upstream(self, first: bytes = b"") -> RemoteStream:
        config = self.proxy_settings()
        try:
            self.upstream = await RemoteStream.open(
                self.target, self.host, self.port, connect_timeout=config.connect_timeout,
                idle_timeout=config.websocket_idle_timeout if self.websocket else config.idle_timeout,
                first=first,
            )
        except ProxyConnectError as exc:
            raise self.fail(exc) from None
        return self.upstream

    def upstream_target(self) -> str:
        query = self.request.query
        server_token = getattr(self.identity_provider, "token", None)
        if query and server_token:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k == "token" and v == server_token for k, v in pairs):
                query = urlencode([(k, v) for k, v in pairs if not (k == "token" and v == server_token)])
        return self.path + (f"?{query}" if query else "")

    def upstream_headers(self) -> list[tuple[str, str]]:
        cookie_name = ""
        try:
            cookie_name = self.identity_provider.get_cookie_name(self)
        except Exception:  # noqa: BLE001 - an identity provider without a cookie
            pass
        headers = upstream_headers(
            list(self.request.headers.get_all()), host=self.host, port=self.port, prefix=self.prefix,
            origin=f"{self.request.protocol}://{self.request.host}", proto=self.request.protocol,
            server_cookie_names=frozenset({cookie_name} - {""}), websocket=self.websocket,
        )
        if not self.websocket and "chunked" in self.request.headers.get("Transfer-Encoding", "").lower():
            headers.append(("Transfer-Encoding", "chunked"))  # tornado de-chunks; h11 re-frames
        return headers

    async def send(self, data: bytes | None) -> None:
        try:
            await self.upstream.write(data or b"")
        except ProxyConnectError as exc:
            await self.upstream.close()
            raise self.fail(exc) from None

    async def data_received(self, chunk: bytes) -> None:
        """The request body, passed on as it arrives (SSH's window paces the browser)."""
        if self.upstream is not None and not self.websocket and self.refusal is None:
            data, self.pending_head = self.pending_head + self.h11.send(h11.Data(data=chunk)), b""
            await self.send(data)

    # -- HTTP ---------------------------------------------------------------------------------

    async def relay(self, *_: Any) -> None:
        """End the request body, then stream the app's response back: the body one read from the
        channel brings goes out in one write, flushed (waiting for the browser) before the next
        read, so no more than a read is ever held here. The headers wait for the first body
        bytes, so a small response leaves in one send, when the handler finishes."""
        if self.refusal is not None:
            raise self.refusal
        started = unflushed = False
        try:
            data, self.pending_head = self.pending_head + self.h11.send(h11.EndOfMessage()), b""
            await self.send(data)
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA:
                    if unflushed:
                        unflushed = False
                        await self.flush()
                    data = await self.upstream.read(READ_SIZE)
                    if not data and self.upstream.connection_lost:
                        raise ProxyConnectError("dropped", f"The SSH connection to {self.target.host} was lost.")
                    self.h11.receive_data(data)
                elif isinstance(event, h11.Data):
                    self.write(bytes(event.data))
                    unflushed = True
                elif isinstance(event, h11.Response):
                    self.start_response(event)
                    started = True
                elif isinstance(event, h11.InformationalResponse):
                    continue
                else:  # EndOfMessage, or the app closed after an HTTP/1.0 body
                    break
        except ProxyConnectError as exc:
            if not started:
                raise self.fail(exc) from None
            self.abort(str(exc))
        except h11.RemoteProtocolError as exc:
            if not started:
                raise web.HTTPError(502, "%s", f"{self.host}:{self.port} did not answer in HTTP: {exc}. Is it a "
                                    "web UI (not, e.g., a Dask scheduler's own port)?", reason="Not HTTP") from None
            self.abort(f"bad HTTP from {self.host}:{self.port}: {exc}")
        except StreamClosedError:
            pass  # the browser went away; the channel closes below
        finally:
            await self.upstream.close()
            self.settings["api_last_activity"] = utcnow()

    def start_response(self, response: h11.Response) -> None:
        self.set_status(response.status_code, response.reason.decode("latin-1") or None)
        for name in list(self._headers):
            self.clear_header(name)
        for raw_name, raw_value in response.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            lower = name.lower()
            if lower in HOP_BY_HOP:
                continue
            if lower == "location":
                value = rewrite_location(value, host=self.host, port=self.port, prefix=self.prefix)
            elif lower == "set-cookie":
                value = rewrite_set_cookie(value, prefix=self.prefix)
            self.add_header(name, value)

    def abort(self, why: str) -> None:
        """A response already under way cannot become an error page: cut the connection, so
        the browser sees an incomplete response rather than a complete-looking wrong one."""
        self.log.warning("Cluster proxy %s:%s on %s ended mid-response: %s", self.host, self.port, self.site, why)
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            stream.close()
        self._finished = True

    async def get(self, *_: Any) -> None:
        if self.websocket:
            await self.splice_websocket()
        else:
            await self.relay()

    head = post = put = patch = delete = options = relay

    # -- websockets ---------------------------------------------------------------------------

    async def splice_websocket(self) -> None:
        """Send the upgrade on, then copy bytes both ways until either side closes."""
        head = f"GET {self.upstream_target()} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in self.upstream_headers()) + "\r\n"
        upstream = await self.open_upstream(first=head.encode("latin-1"))
        client = self.detach()

        async def to_app() -> None:
            while True:
                await upstream.write(await client.read_bytes(READ_SIZE, partial=True))

        async def to_browser() -> None:
            while True:
                data = await upstream.read(READ_SIZE)
                if not data:
                    return
                await client.write(data)

        tasks = [asyncio.ensure_future(to_app()), asyncio.ensure_future(to_browser())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await upstream.close()
            client.close()
            self.settings["api_last_activity"] = utcnow()


def handlers(base_url: str) -> list[tuple[str, type]]:
    """The route under ``base_url``, for :data:`jupyter_hpc.server.extension.HANDLER_MODULES`;
    from now on cluster kernels get the route's links (:mod:`jupyter_hpc.kernel_links`)."""
    from .web_uis import WebUIsHandler

    links.configure(base_url)
    return [(url_path_join(base_url, r"/jupyter-hpc/proxy/([^/]+)/([^/]+):(\d+)(/.*)?"), ProxyHandler),
            (url_path_join(base_url, r"/jupyter-hpc/api/proxy/kernels"), WebUIsHandler)]
