"""JupyterLab's Terminal on the cluster: jupyter_server's terminals API backed by SSH sessions
with a PTY on the user's pooled connection, a login shell on a site's login node or inside a
kernel's SLURM job. Nothing runs on the server's host.

``HPCTerminalManager`` (create, get, list, terminate, cull) holds the terminals;
:mod:`.handlers` speaks the REST and websocket shapes JupyterLab uses; :func:`load_terminals`
puts them in place of the local ones (the jupyter_hpc server extension calls it).
"""

from .extension import load_terminals
from .manager import HPCTerminalManager
from .remote import RemoteTerminal

__all__ = ["HPCTerminalManager", "RemoteTerminal", "load_terminals"]
