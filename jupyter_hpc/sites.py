"""Sites: the one place that says which clusters a user reaches, and how.

A site is a named cluster entry in traitlets config, so that ``jupyter_server_config.py`` or
``.json``, ``jupyterhub_config.py`` and ``jupyter hpc site add`` all write the same thing::

    c.HPCSites.sites = {
        "cori": {
            "display_name": "Cori",
            "host": "cori.nersc.gov", "username": "alice", "client_keys": ["~/.ssh/nersc"],
            "remote_python": "/usr/bin/python3",
            "roots": {"home": "~", "scratch": "$SCRATCH"},
            "targets": {
                "login": {"display_name": "login"},
                "knl": {"display_name": "KNL node", "provisioner": "hpc-slurm", "partition": "regular"},
            },
        },
    }

A site's settings are the SSH provisioner's own setting names, and a SLURM target's are the
SLURM provisioner's: a kernel discovered on the site gets exactly the kernelspec config an
admin would have written by hand, so there is one meaning for each name. Everything is
checked when the config is read: a misspelt key is an error naming it and the known ones,
not a setting silently ignored until a kernel fails to start.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from traitlets import Dict, validate
from traitlets.config import SingletonConfigurable

from .errors import HPCError
from .ssh import SSHTarget

#: Keys of a site that are not provisioner settings.
SITE_KEYS = ("display_name", "roots", "targets", "terminals", "proxy_hosts", "trusted_kernel_dirs")
#: Keys of a target that are not provisioner settings.
TARGET_KEYS = ("display_name", "provisioner")
PROVISIONERS = ("hpc-ssh", "hpc-slurm")
DEFAULT_ROOTS = {"home": "~"}
DEFAULT_TARGET = "login"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class SiteConfigError(HPCError, ValueError):
    """A site's configuration names something that does not exist or has a bad value."""


def provisioner_settings(provisioner: str) -> set[str]:
    """The setting names a provisioner accepts (its config traits)."""
    from .provisioners import SlurmProvisioner, SSHProvisioner

    cls = SlurmProvisioner if provisioner == "hpc-slurm" else SSHProvisioner
    return set(cls.class_trait_names(config=True))


def configured_defaults(config: Mapping[str, Any], provisioner: str) -> dict[str, Any]:
    """What the server's own config (``c.SSHProvisioner.<name>``, ``c.SlurmProvisioner.<name>``)
    sets for every kernel of ``provisioner``, the most specific class last, as traitlets
    resolves it: the values a site or target that says nothing of them runs with."""
    from .provisioners import SlurmProvisioner, SSHProvisioner

    cls = SlurmProvisioner if provisioner == "hpc-slurm" else SSHProvisioner
    names = set(cls.class_trait_names(config=True))
    values: dict[str, Any] = {}
    for klass in reversed(cls.mro()):
        section = config.get(klass.__name__) if klass.__name__ in config else None
        if isinstance(section, Mapping):
            values.update({name: value for name, value in section.items() if name in names})
    return values


@dataclasses.dataclass(frozen=True)
class Target:
    """Where on a site a kernel runs: the login node (``hpc-ssh``) or a SLURM job (``hpc-slurm``)."""

    name: str
    display_name: str
    provisioner: str
    settings: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Site:
    """One cluster: how to log in, which file systems to show, where kernels may run."""

    name: str
    display_name: str
    settings: Mapping[str, Any]
    roots: Mapping[str, str]
    targets: Mapping[str, Target]
    terminals: bool = True  # JupyterLab's Terminal may open a shell here (jupyter_hpc.terminals)
    #: Host patterns (fnmatch, e.g. ``"nid*"``) the web-UI proxy may reach besides the login
    #: node's loopback and the nodes of the user's running jobs (:mod:`jupyter_hpc.proxy`).
    proxy_hosts: tuple[str, ...] = ()
    #: Remote directories whose kernelspecs are offered though another user owns them (a group
    #: software stack, e.g. "/global/common/software/myproject/kernels"); elsewhere such a
    #: spec is skipped with a warning, since its kernel would run that user's code as this one.
    trusted_kernel_dirs: tuple[str, ...] = ()

    @property
    def remote_python(self) -> str:
        return str(self.settings.get("remote_python") or "python3")

    def target(self, name: str) -> Target:
        try:
            return self.targets[name]
        except KeyError:
            raise SiteConfigError(
                f"Site {self.name!r} has no target {name!r}; its targets are: {', '.join(self.targets)}."
            ) from None

    def provisioner_config(self, target: str) -> dict[str, Any]:
        """The kernelspec's ``metadata.kernel_provisioner.config`` for a kernel on ``target``:
        the site's settings with the target's on top."""
        return {**self.settings, **self.target(target).settings}

    def ssh_target(self, **overrides: Any) -> SSHTarget:
        """Where and as whom to log in, as the kernels on this site do, so that discovery,
        files and the queue ride the kernels' pooled connection.

        With no ``client_keys`` configured, a credential held in memory (the hub's
        certificate, :mod:`jupyter_hpc.ssh.credentials`) is used when there is one.
        """
        settings = {**self.settings, **overrides}
        options: dict[str, Any] = {
            "host": settings["host"],
            "port": settings.get("port"),
            "username": settings.get("username"),
            "client_keys": tuple(settings.get("client_keys") or ()),
            "known_hosts": settings.get("known_hosts"),
            "jump_host": settings.get("jump_host"),
        }
        if "launch_timeout" in settings:
            options["connect_timeout"] = float(settings["launch_timeout"])
        if not options["client_keys"]:
            options["identities"] = _identities()
        return SSHTarget(**options)


def _identities() -> tuple:
    try:
        from .ssh import credentials
    except ImportError:  # the in-memory credential store is the hub's; absent, none
        return ()
    return tuple(credentials.identities())


def parse_site(name: str, entry: Any) -> Site:
    """Check one ``c.HPCSites.sites`` entry and build its :class:`Site`."""
    if not isinstance(name, str) or not NAME.match(name):
        raise SiteConfigError(
            f"Site name {name!r} is not usable: use lowercase letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'cori')."
        )
    if not isinstance(entry, Mapping):
        raise SiteConfigError(f"Site {name!r} must be a dict of settings, not {type(entry).__name__}.")
    entry = dict(entry)
    known = provisioner_settings("hpc-ssh")
    unknown = sorted(set(entry) - known - set(SITE_KEYS))
    if unknown:
        raise SiteConfigError(
            f"Unknown setting(s) {', '.join(map(repr, unknown))} in site {name!r}. "
            f"Known settings: {', '.join(sorted(known | set(SITE_KEYS)))}."
        )
    if not entry.get("host"):
        raise SiteConfigError(f"Site {name!r} has no 'host': set it to the login node, e.g. 'cori.nersc.gov'.")
    _check_settings(f"site {name!r}", "hpc-ssh", {k: v for k, v in entry.items() if k not in SITE_KEYS})
    roots = entry.get("roots") or dict(DEFAULT_ROOTS)
    if not isinstance(roots, Mapping) or not all(
        isinstance(k, str) and NAME.match(k) and isinstance(v, str) and v for k, v in roots.items()
    ):
        raise SiteConfigError(
            f"Site {name!r}: 'roots' must map folder names (lowercase, e.g. 'home') to remote paths "
            f"such as '~' or '$SCRATCH', not {roots!r}."
        )
    targets_entry = entry.get("targets") or {DEFAULT_TARGET: {}}
    if not isinstance(targets_entry, Mapping):
        raise SiteConfigError(f"Site {name!r}: 'targets' must be a dict of target name to settings.")
    targets = {
        target_name: parse_target(name, target_name, target_entry)
        for target_name, target_entry in targets_entry.items()
    }
    terminals = entry.get("terminals", True)
    if not isinstance(terminals, bool):
        raise SiteConfigError(f"Site {name!r}: 'terminals' must be true or false, not {terminals!r}.")
    proxy_hosts = entry.get("proxy_hosts") or []
    if not isinstance(proxy_hosts, (list, tuple)) or not all(isinstance(p, str) and p.strip() for p in proxy_hosts):
        raise SiteConfigError(
            f"Site {name!r}: 'proxy_hosts' must be a list of host patterns such as ['nid*', "
            f"'*.cori.nersc.gov'], not {proxy_hosts!r}."
        )
    trusted_kernel_dirs = entry.get("trusted_kernel_dirs") or []
    if not isinstance(trusted_kernel_dirs, (list, tuple)) or not all(
        isinstance(d, str) and d.startswith(("/", "~")) for d in trusted_kernel_dirs
    ):
        raise SiteConfigError(
            f"Site {name!r}: 'trusted_kernel_dirs' must be a list of absolute remote directories, e.g. "
            f"['/global/common/software/myproject/kernels'], not {trusted_kernel_dirs!r}."
        )
    settings = {k: v for k, v in entry.items() if k not in SITE_KEYS}
    return Site(
        name=name,
        display_name=str(entry.get("display_name") or name.capitalize()),
        settings=settings,
        roots=dict(roots),
        targets=targets,
        terminals=terminals,
        proxy_hosts=tuple(p.strip().lower() for p in proxy_hosts),
        trusted_kernel_dirs=tuple(trusted_kernel_dirs),
    )


def parse_target(site: str, name: Any, entry: Any) -> Target:
    where = f"target {name!r} of site {site!r}"
    if not isinstance(name, str) or not NAME.match(name):
        raise SiteConfigError(f"The name of {where} is not usable: use lowercase letters, digits, '.', '_', '-'.")
    entry = dict(entry or {})
    provisioner = entry.get("provisioner", "hpc-ssh")
    if provisioner not in PROVISIONERS:
        raise SiteConfigError(
            f"{where.capitalize()} names provisioner {provisioner!r}; use one of {', '.join(PROVISIONERS)}."
        )
    known = provisioner_settings(provisioner)
    unknown = sorted(set(entry) - known - set(TARGET_KEYS))
    if unknown:
        raise SiteConfigError(
            f"Unknown setting(s) {', '.join(map(repr, unknown))} in {where} ({provisioner}). "
            f"Known settings: {', '.join(sorted(known | set(TARGET_KEYS)))}."
        )
    settings = {k: v for k, v in entry.items() if k not in TARGET_KEYS}
    _check_settings(where, provisioner, settings)
    return Target(
        name=name,
        display_name=str(entry.get("display_name") or name),
        provisioner=provisioner,
        settings=settings,
    )


def _check_settings(where: str, provisioner: str, settings: dict[str, Any]) -> None:
    """Give each value to the provisioner's own traits, so a bad value fails here with its
    validator's message (a port out of range, a negative lease), not at a kernel's start."""
    from traitlets import TraitError

    from .provisioners import SlurmProvisioner, SSHProvisioner

    cls = SlurmProvisioner if provisioner == "hpc-slurm" else SSHProvisioner
    probe = cls.__new__(cls)
    for key, value in settings.items():
        trait = cls.class_traits()[key]
        try:
            trait._validate(probe, value)
        except (TraitError, ValueError, TypeError) as exc:
            raise SiteConfigError(f"Bad value for {key!r} in {where}: {exc}") from None


class HPCSites(SingletonConfigurable):
    """The configured sites, checked once when the config is read."""

    sites = Dict(
        config=True,
        help="""Clusters to reach, by name: each a dict of the SSH provisioner's settings
        (host, port, username, client_keys, known_hosts, jump_host, remote_python, lease, ...),
        plus 'display_name' (e.g. "Cori"), 'roots' (the file systems the file browser shows,
        e.g. {"home": "~", "scratch": "$SCRATCH"}; default {"home": "~"}) and 'targets' (where
        kernels run, e.g. {"login": {}, "knl": {"provisioner": "hpc-slurm", "partition":
        "regular", "display_name": "KNL node"}}; default: one target, "login", on the login
        node), 'terminals' (false: JupyterLab's Terminal opens no shell there; default true),
        'proxy_hosts' (host patterns the web-UI proxy may reach besides the login node's
        loopback and your jobs' nodes, e.g. ["nid*", "*.cori.nersc.gov"]), 'trusted_kernel_dirs'
        (remote directories whose kernelspecs are offered though another user owns them, a
        group software stack; elsewhere such specs are skipped with a warning).
        `jupyter hpc site add` writes this setting for you.""",
    )

    @validate("sites")
    def _valid_sites(self, proposal: dict) -> dict:
        for name, entry in proposal["value"].items():
            parse_site(name, entry)  # raises with the name of what is wrong
        return proposal["value"]

    def all(self) -> list[Site]:
        return [parse_site(name, entry) for name, entry in self.sites.items()]

    def names(self) -> list[str]:
        return list(self.sites)

    def site(self, name: str) -> Site:
        if name not in self.sites:
            known = ", ".join(self.sites) or "none (set c.HPCSites.sites, or run `jupyter hpc site add`)"
            raise SiteConfigError(f"No site named {name!r}. Configured sites: {known}.")
        return parse_site(name, self.sites[name])

    def default_site(self) -> Site:
        """The only site there is; an error that says what to set when there are none or several."""
        if len(self.sites) != 1:
            which = "no site is configured" if not self.sites else f"there are several ({', '.join(self.sites)})"
            raise SiteConfigError(f"Cannot choose a site: {which}. Name one explicitly.")
        return self.site(next(iter(self.sites)))
