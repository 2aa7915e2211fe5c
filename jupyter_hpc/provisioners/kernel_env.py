"""What of the server's environment a remote kernel gets: an allow list, and a deny list after it.

A kernel on the cluster is not the server's child: its environment is readable there by the
user's own jobs' logs, a saved ``%env``, site tracking tools and root on the node. The server's
own environment holds what must never leave its host: a hub server's ``JPY_API_TOKEN`` /
``JUPYTERHUB_API_TOKEN`` (which reads the user's hub model), ``JUPYTER_TOKEN``, and whatever else
the site's service manager put there. So the kernel gets:

1. from the server's environment, only the names in :data:`FROM_SERVER` (``JPY_SESSION_NAME``,
   which JupyterLab's sessions set so the kernel knows its notebook);
2. the kernelspec's own ``env`` (its ``${VAR}`` substitutions see only step 1's names, so a
   planted spec's ``"X": "${JPY_API_TOKEN}"`` expands to nothing of the server's);
3. the site's ``env`` (``SSHProvisioner.env``) and what the server's own parts set for
   kernels (the proxy's ``JUPYTER_HPC_PROXY``, Dask's dashboard link);
4. and finally nothing whose name is in :data:`NEVER` or starts with one of
   :data:`NEVER_PREFIXES`, whichever step put it there.

A part that computes a variable for kernels sets it in the launch's env after step 1
(``SSHProvisioner.pre_launch``); a part that needs a name copied from the server's own
environment adds it to :data:`FROM_SERVER` here. Either way step 4 runs last: this module is
the one place to read what a kernel may receive.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Names copied from the server's environment to the kernel's.
FROM_SERVER: frozenset[str] = frozenset({"JPY_SESSION_NAME"})

#: Names never sent to a kernel, from any source: tokens that read the hub or a server.
NEVER: frozenset[str] = frozenset({"JPY_API_TOKEN", "JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN"})
NEVER_PREFIXES: tuple[str, ...] = ("JUPYTERHUB_",)


def from_server(server_env: Mapping[str, str] | None) -> dict[str, str]:
    """Step 1: the allowed names of the server's environment (``os.environ`` plus what
    jupyter_server added for this kernel)."""
    server_env = server_env or {}
    return {name: server_env[name] for name in FROM_SERVER if name in server_env}


def never_sent(name: str) -> bool:
    return name in NEVER or name.startswith(NEVER_PREFIXES)


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """Step 4: ``env`` without any name a kernel must never receive."""
    return {name: value for name, value in env.items() if not never_sent(name)}
