"""The cluster's files in the browser: an async SFTP contents manager.

``c.ServerApp.contents_manager_class = "jupyter_hpc.contents.SFTPContentsManager"``
"""

from .checkpoints import SFTPCheckpoints
from .clusters import ClusterContentsManager
from .manager import SFTPContentsManager

__all__ = ["ClusterContentsManager", "SFTPCheckpoints", "SFTPContentsManager"]
