"""The cluster's files in the browser: an async SFTP contents manager per site, and a layer
over them that shows every site (one folder each when there are several) and opens in the home.

``c.ServerApp.contents_manager_class = "jupyter_hpc.contents.ClusterContentsManager"``
(or ``SFTPContentsManager`` for one site alone)
"""

from .checkpoints import SFTPCheckpoints
from .clusters import ClusterContentsManager
from .manager import SFTPContentsManager

__all__ = ["ClusterContentsManager", "SFTPCheckpoints", "SFTPContentsManager"]
