"""Web UIs that run on the cluster, one click away.

``{base_url}jupyter-hpc/proxy/<site>/<host>:<port>/<path>`` carries HTTP (streamed both ways)
and websockets to ``<host>:<port>`` as the site's login node reaches it, over ``direct-tcpip``
channels of the user's one pooled SSH connection: one channel per request or websocket, closed
with it. Hosts are limited to the login node's loopback, the nodes of the user's running jobs
and kernels there, and the site's ``proxy_hosts`` patterns; never the server's own host.

- :mod:`.kernel_helper`: ``proxy_url(port, host=None)``, stdlib only, shipped to kernels;
- :mod:`.channel`: one direct-tcpip channel, driven from the server's loop;
- :mod:`.hosts`: which hosts a site's route may reach;
- :mod:`.rewrite`: request and response headers as they cross the route;
- :mod:`.node_probe`: what a kernel's node listens on, and its addresses;
- :mod:`.handlers`: the tornado handler (HTTP and websocket), registered by the server extension;
- :mod:`.web_uis`: `GET /jupyter-hpc/api/proxy/kernels`, the web UIs each kernel serves (the sidebar).

Importing this package imports nothing but the standard library: ``jupyter_hpc.proxy_url``
comes from here.
"""

from .kernel_helper import proxy_url

__all__ = ["proxy_url"]
