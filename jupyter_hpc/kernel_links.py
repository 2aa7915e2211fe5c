"""Where the cluster proxy's route lives, and the environment that makes a kernel's links open.

A leaf module (standard library only) shared by the proxy (:mod:`jupyter_hpc.proxy`, which
serves the route) and the provisioners (which start kernels with its links), so that neither
imports the other.

The server extension calls :func:`configure` with the server's ``base_url`` once it has
registered the route; from then on every cluster kernel the provisioners start gets
:func:`kernel_proxy_env` for its site (``JUPYTER_HPC_PROXY`` and Dask's dashboard link) and
:func:`kernel_helper_files` on its ``PYTHONPATH``. A kernel started outside a server (``jupyter
console``) gets neither, since no route would answer its links. Standard library only.
"""

from __future__ import annotations

import os
from urllib.parse import quote

ROUTE = "jupyter-hpc/proxy"
PROXY_ENV = "JUPYTER_HPC_PROXY"
DASK_LINK_ENV = "DASK_DISTRIBUTED__DASHBOARD__LINK"
# Dask formats its dashboard link with the environment and the scheduler's host and port.
DASK_LINK = "{%s}/{host}:{port}/status" % PROXY_ENV

_base_url: str | None = None


def configure(base_url: str) -> None:
    """Record the server's base URL (``/`` or ``/user/alice/``): the route is being served."""
    global _base_url
    _base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"


def route_prefix(site: str) -> str | None:
    """The absolute path of ``site``'s route, e.g. ``/user/alice/jupyter-hpc/proxy/cori``;
    None when no server serves the route in this process."""
    if _base_url is None:
        return None
    return f"{_base_url}{ROUTE}/{quote(site, safe='@:.-_~')}"


def kernel_proxy_env(site: str) -> dict[str, str]:
    """The variables every cluster kernel of ``site`` gets, so that the links it prints open
    through the route: ``JUPYTER_HPC_PROXY`` and Dask's ``distributed.dashboard.link``."""
    prefix = route_prefix(site)
    if prefix is None:
        return {}
    return {PROXY_ENV: prefix, DASK_LINK_ENV: DASK_LINK}


def kernel_helper_source() -> str:
    """The stdlib-only ``proxy_url`` module, as the kernel's ``jupyter_hpc/__init__.py``."""
    with open(os.path.join(os.path.dirname(__file__), "proxy", "kernel_helper.py"), encoding="utf-8") as handle:
        return handle.read()


def kernel_helper_files() -> dict[str, str]:
    """Files the launcher writes into a private directory on the kernel's ``PYTHONPATH``
    (relative path → text), so that ``from jupyter_hpc import proxy_url`` works in a kernel."""
    return {"jupyter_hpc/__init__.py": kernel_helper_source()} if _base_url is not None else {}


def kernel_site(provisioner) -> str:
    """The route's site for a kernel: its discovered site's name (kernelspec metadata
    ``jupyter_hpc.site``), else its login node as ``user@host:port`` (a hand-written kernelspec)."""
    spec = getattr(provisioner, "kernel_spec", None)
    metadata = getattr(spec, "metadata", None) or {}
    site = (metadata.get("jupyter_hpc") or {}).get("site")
    return str(site) if site else provisioner.ssh_target().spec()
