"""Kernelspec resources (logos) served inert: ``Content-Security-Policy: sandbox``.

jupyter_server serves ``/kernelspecs/<name>/<file>`` from the server's own origin, where the
user's cookies and ``_xsrf`` live. A logo that came from a cluster is the cluster's bytes, so
this handler (registered by the server extension ahead of jupyter_server's own) gives every
answer the ``sandbox`` directive, as jupyter_server's FilesHandler does for /files/ (there with
``allow-scripts``; here without): opened directly, nothing in it runs, and whatever it is, it
runs in an opaque origin that reads no cookie. Discovery mirrors PNG logos only
(:mod:`.remote_discovery`), so no SVG reaches this handler from a cluster at all.
"""

from __future__ import annotations

from jupyter_server.kernelspecs.handlers import KernelSpecResourceHandler
from jupyter_server.services.kernelspecs.handlers import kernel_name_regex


class SandboxedKernelSpecResourceHandler(KernelSpecResourceHandler):
    """jupyter_server's kernelspec resource handler, every answer sandboxed."""

    @property
    def content_security_policy(self) -> str:
        return super().content_security_policy + "; sandbox"


def handlers(base_url: str) -> list:
    """For ``jupyter_hpc.server.extension.HANDLER_MODULES``: the route jupyter_server has, ours first."""
    return [(base_url.rstrip("/") + r"/kernelspecs/%s/(?P<path>.*)" % kernel_name_regex, SandboxedKernelSpecResourceHandler)]
