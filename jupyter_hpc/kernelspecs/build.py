"""A remote kernelspec as the local kernelspecs the launcher shows, one per target of its site.

The manager and `jupyter hpc install` both build them here, so a laptop's installed
kernelspec and the server's discovered one are the same kernel.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from .discovery import DiscoveryResult, RemoteSpec

UNSAFE = re.compile(r"[^a-z0-9._-]+")
#: What a kernelspec's metadata.jupyter_hpc.transport may choose (SSHProvisioner.wanted_transport).
SPEC_TRANSPORTS = ("ipc", "tcp-curve", "tcp")


@dataclasses.dataclass(frozen=True)
class LocalSpec:
    name: str
    kernel: dict[str, Any]
    resources: dict[str, bytes]
    site: str
    target: str
    remote: RemoteSpec


def safe_part(name: str) -> str:
    """``name`` in ``[a-z0-9._-]``; a name that had to change gets a short digest of the
    original, so two remote names never meet in one local name and the result is stable."""
    lowered = name.lower()
    cleaned = UNSAFE.sub("-", lowered).strip("-.") or "kernel"
    if cleaned != lowered:
        cleaned = f"{cleaned}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return cleaned


def local_name(site: str, target: str, remote_name: str) -> str:
    return f"{safe_part(site)}-{safe_part(target)}-{safe_part(remote_name)}"


def one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def local_kernelspecs(site: Any, result: DiscoveryResult,
                      defaults: Mapping[str, Mapping[str, Any]] | None = None) -> list[LocalSpec]:
    """Every (target, remote spec) of ``site`` as a local kernelspec; problems go to
    ``result.warnings``. ``defaults``: per provisioner name, what the server's own config sets
    for all its kernels (:func:`jupyter_hpc.sites.configured_defaults`)."""
    built = []
    for remote in result.specs:
        metadata = dict(remote.spec.get("metadata") or {})
        if "kernel_provisioner" in metadata:
            metadata.pop("kernel_provisioner")
            result.warnings.append(
                f"{remote.kernel_file}: its kernel_provisioner is ignored; the site's targets decide where it runs"
            )
        ours = metadata.pop("jupyter_hpc", None)
        setup: list[str] = []
        if isinstance(ours, dict) and "setup" in ours:
            if isinstance(ours["setup"], list) and all(isinstance(line, str) for line in ours["setup"]):
                setup = list(ours["setup"])
            else:
                result.warnings.append(f"{remote.kernel_file}: metadata.jupyter_hpc.setup is not a list of strings; ignored")
        transport = ours.get("transport") if isinstance(ours, dict) else None
        if transport is not None and transport not in SPEC_TRANSPORTS:
            result.warnings.append(f"{remote.kernel_file}: metadata.jupyter_hpc.transport is not one of "
                                   f"{', '.join(SPEC_TRANSPORTS)}; ignored")
            transport = None
        for target in site.targets.values():
            built.append(_local_spec(site, target, remote, metadata, setup, result,
                                     (defaults or {}).get(target.provisioner, {}), transport))
    return built


def remote_argv(argv: list[str], resource_dir: str, result: DiscoveryResult) -> list[str]:
    """jupyter_client's own substitutions, made with the remote's values (the kernel runs
    there): ``{resource_dir}``, ``{prefix}``, and a leading ``python``, ``python3`` or
    ``python3.X`` of the remote python's version as that python itself, as
    ``KernelManager.format_kernel_cmd`` makes it ``sys.executable`` locally (ipykernel's and
    xeus-python's own specs say ``python`` or ``python3.11``, meaning the environment's)."""
    argv = [arg.replace("{resource_dir}", resource_dir).replace("{prefix}", result.prefix) for arg in argv]
    major = result.python_version.split(".")[0]
    if result.executable and argv and argv[0] in {"python", f"python{major}", f"python{result.python_version}"}:
        argv[0] = result.executable
    return argv


def _local_spec(site: Any, target: Any, remote: RemoteSpec, metadata: dict, setup: list[str],
                result: DiscoveryResult, defaults: Mapping[str, Any], transport: str | None = None) -> LocalSpec:
    spec = remote.spec
    config = site.provisioner_config(target.name)
    if setup:
        config["setup"] = [*(config.get("setup") or []), *setup]
    argv = remote_argv(spec["argv"], remote.resource_dir, result)
    # '${VAR}' in env is for the remote launcher to expand; '$$' survives jupyter_client's local pass.
    env = {name: value.replace("$", "$$") for name, value in spec.get("env", {}).items()}
    display = one_line(spec.get("display_name") or remote.name)
    name = local_name(site.name, target.name, remote.name)
    kernel = {
        "argv": argv,
        "display_name": f"{site.display_name}: {display} ({target.display_name})",
        "language": spec.get("language", ""),
        "interrupt_mode": spec.get("interrupt_mode", "signal"),
        "env": env,
        "metadata": {
            **metadata,
            # JupyterLab offers its debugger on the kernelspec's word (metadata.debugger): a
            # site (or a server-wide c.SSHProvisioner.debugger) 'off' starts kernels that have
            # none, so its switch is greyed.
            **({"debugger": False} if str(config.get("debugger", defaults.get("debugger", ""))).lower() == "off" else {}),
            "kernel_provisioner": {"provisioner_name": target.provisioner, "config": config},
            "jupyter_hpc": {
                "site": site.name, "target": target.name, "remote_name": remote.name,
                "remote_file": remote.kernel_file, "provisioner": target.provisioner,
                **({"setup": setup} if setup else {}),
                **({"transport": transport} if transport else {}),
            },
        },
    }
    if spec.get("kernel_protocol_version"):
        kernel["kernel_protocol_version"] = spec["kernel_protocol_version"]
    return LocalSpec(name=name, kernel=kernel, resources=dict(remote.resources), site=site.name,
                     target=target.name, remote=remote)


def resources_digest(local: LocalSpec) -> str:
    digest = hashlib.sha256()
    for name in sorted(local.resources):
        digest.update(name.encode() + b"\0" + hashlib.sha256(local.resources[name]).digest())
    return digest.hexdigest()[:16]


def write_kernelspec(directory: str, local: LocalSpec, with_kernel_json: bool = True) -> str:
    """Write ``local``'s kernel.json and logos into ``directory`` (made 0700 if missing).
    File names are ours (RESOURCES), never the remote's."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    files = dict(local.resources)
    if with_kernel_json:
        files["kernel.json"] = json.dumps(local.kernel, indent=1).encode()
    for name, data in files.items():
        path = os.path.join(directory, name)
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    return directory
