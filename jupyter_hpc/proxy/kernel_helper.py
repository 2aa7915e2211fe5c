"""``proxy_url(port, host=None)``: the browser's URL of a web UI a kernel on the cluster serves.

Standard library only. In the server it is ``jupyter_hpc.proxy_url``; in a cluster kernel,
where jupyter_hpc is not installed, the launcher puts this very file on the kernel's
``PYTHONPATH`` as ``jupyter_hpc/__init__.py`` (:func:`jupyter_hpc.kernel_links.kernel_helper_files`),
so that ``from jupyter_hpc import proxy_url`` works there too. Shipped so, it extends the
package's path, so that a jupyter_hpc installed on the cluster (the magics) still imports.

    >>> from jupyter_hpc import proxy_url
    >>> proxy_url(6006)                   # TensorBoard on this node
    '/user/alice/jupyter-hpc/proxy/cori/nid00042:6006/'
"""

import os
import socket

if __name__ == "jupyter_hpc":  # shipped to a kernel: let an installed jupyter_hpc's modules import
    from pkgutil import extend_path

    __path__ = extend_path(__path__, __name__)  # noqa: F821 - a package's own __path__

PROXY_ENV = "JUPYTER_HPC_PROXY"


def proxy_url(port, host=None):
    """The path (under the Jupyter server's origin) that opens ``host:port`` in the browser.

    ``host`` defaults to this node's name when in a SLURM job, else the login node's loopback
    (127.0.0.1). The route's prefix comes from ``$JUPYTER_HPC_PROXY``, which every cluster
    kernel started by jupyter-hpc has.
    """
    prefix = os.environ.get(PROXY_ENV)
    if not prefix:
        raise RuntimeError(
            "$%s is not set: this kernel was not started by a jupyter-hpc server with the proxy "
            "(a cluster kernel from JupyterLab or the hub has it)." % PROXY_ENV
        )
    port = int(port)
    if not 0 < port < 65536:
        raise ValueError("port must be 1-65535, not %r" % port)
    if host is None:
        host = socket.gethostname() if os.environ.get("SLURM_JOB_ID") else "127.0.0.1"
    host = str(host)
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host  # IPv6
    return "%s/%s:%d/" % (prefix.rstrip("/"), host, port)
