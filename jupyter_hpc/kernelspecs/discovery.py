"""One SSH exec per (user, site) that lists every kernelspec the user has there.

The stdlib snippet :mod:`.remote_discovery` travels on stdin behind the launcher's bootstrap,
on the site's pooled connection (the one its kernels, files and queue use), so a listing
costs one session on a connection that is usually open already: no login, no SFTP walk of
each directory. The answer is checked here, the side that trusts nothing: each kernel.json is
parsed with bounds, and a spec that is not one is skipped with a warning naming its remote
file; a bad spec never fails the list.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import time
from functools import lru_cache
from importlib import resources as importlib_resources
from typing import Any

from ..errors import HPCError, printable
from ..launcher import script_argv, script_stdin
from ..ssh import get_pool, run_in_ssh_loop, run_in_ssh_loop_sync
from .remote_discovery import MARKER, RESOURCES

MAX_KERNEL_JSON = 1 << 20  # bytes of one kernel.json
MAX_RESOURCE = 512 << 10  # bytes of one logo
MAX_SPECS = 2000  # kernelspecs listed per site
MAX_TOTAL = 16 << 20  # bytes of kernel.json text and logos per site, in all
# The answer line: the above, base64 for the logos, names and warnings (the snippet keeps to it).
MAX_ANSWER = MAX_TOTAL * 2 + (4 << 20)
MAX_DISPLAY_NAME = 200


class DiscoveryError(HPCError):
    """A site's kernelspecs could not be listed at all (not: one spec was bad)."""


@dataclasses.dataclass(frozen=True)
class RemoteSpec:
    """One kernelspec found on a site, as its kernel.json says (checked), with its logos."""

    name: str  # the remote directory's name, lowercased: jupyter_client's key for it
    resource_dir: str  # the remote directory
    kernel_file: str  # the remote kernel.json, named in warnings and by `jupyter hpc kernels`
    spec: dict[str, Any]
    resources: dict[str, bytes] = dataclasses.field(default_factory=dict, repr=False)


@dataclasses.dataclass
class DiscoveryResult:
    site: str
    specs: list[RemoteSpec]
    warnings: list[str]
    kernel_dirs: list[str]
    prefix: str = ""  # the remote python's sys.prefix, as its site module makes it (a venv's own)
    elapsed: float = 0.0
    executable: str = ""  # that python's sys.executable
    python_version: str = ""  # its "3.11"


@lru_cache(maxsize=1)
def discovery_source() -> bytes:
    return importlib_resources.files(__package__).joinpath("remote_discovery.py").read_bytes()


def discovery_stdin(trusted_dirs: tuple[str, ...] | list[str] = ()) -> str:
    request = {"max_kernel_json": MAX_KERNEL_JSON, "max_resource": MAX_RESOURCE, "max_specs": MAX_SPECS,
               "max_total": MAX_TOTAL, "trusted_dirs": list(trusted_dirs)}
    return (script_stdin(discovery_source()) + json.dumps(request).encode() + b"\n").decode("utf-8")


async def discover(site: Any, *, timeout: float = 30.0) -> DiscoveryResult:
    """List ``site``'s kernelspecs (a :class:`jupyter_hpc.sites.Site`); from any loop.

    Raises an :class:`HPCError` (``SSHConnectError``, ``HostKeyError``, ``DiscoveryError``)
    when the site cannot be listed; bad specs are only warnings in the result.
    """
    return await run_in_ssh_loop(_discover(site, timeout))


def discover_sync(site: Any, *, timeout: float = 30.0) -> DiscoveryResult:
    """:func:`discover` for a caller with no running loop (a CLI command)."""
    return run_in_ssh_loop_sync(_discover(site, timeout))


async def _discover(site: Any, timeout: float) -> DiscoveryResult:
    started = time.monotonic()
    target = site.ssh_target()
    remote_python = site.remote_python
    connection = await asyncio.wait_for(get_pool().connect(target), timeout)
    argv = script_argv(remote_python, site=True)
    try:
        completed = await connection.run(argv, input=discovery_stdin(getattr(site, "trusted_kernel_dirs", ())),
                                         check=False, timeout=timeout)
    except asyncio.TimeoutError:
        raise DiscoveryError(
            f"Listing the kernelspecs on {target.host} took more than {timeout:.0f} s "
            "(discovery_timeout): the login node may be overloaded, or a kernel directory is "
            "on a file system that hangs.",
        ) from None
    result = parse_answer(str(completed.stdout or ""), site=site.name, host=target.host,
                          remote_python=remote_python, exit_status=completed.exit_status,
                          stderr=str(completed.stderr or ""), argv=argv)
    result.elapsed = time.monotonic() - started
    return result


def parse_answer(stdout: str, *, site: str, host: str, remote_python: str, exit_status: int | None,
                 stderr: str, argv: list[str] | None = None) -> DiscoveryResult:
    """The snippet's answer as a result, or a DiscoveryError a user can act on."""
    if len(stdout) > MAX_ANSWER:
        raise DiscoveryError(f"The kernelspec listing from {host} is larger than {MAX_ANSWER >> 20} MB; "
                             "something on the login node prints far more than the listing.")
    line = next((text for text in reversed(stdout.splitlines()) if text.startswith(MARKER)), None)
    if line is None:
        stderr = stderr.strip()
        if exit_status == 127 or "not found" in stderr or "No such file" in stderr:
            message = (f"The remote python {remote_python!r} was not found on {host}, so its "
                       "kernelspecs cannot be listed. Set the site's remote_python to a Python "
                       "3.8+ that exists there (e.g. /usr/bin/python3).")
        else:
            message = (f"Listing the kernelspecs on {host} with {remote_python} failed "
                       f"(exit status {exit_status}): {stderr[-500:] or 'no error output'}")
        raise DiscoveryError(printable(message), log_detail=f"argv={argv} stderr={stderr!r}")
    try:
        answer = json.loads(line[len(MARKER):])
    except (ValueError, RecursionError):
        raise DiscoveryError(f"The kernelspec listing from {host} is not JSON: {line[:200]!r}") from None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        error = answer.get("error") if isinstance(answer, dict) else None
        raise DiscoveryError(f"Listing the kernelspecs on {host} failed: {error or answer!r:.300}")
    warnings = [printable(str(w)) for w in answer.get("warnings") or [] if isinstance(w, str)]
    specs = []
    for entry in answer.get("specs") or []:
        spec = remote_spec(entry, warnings)
        if spec is not None:
            specs.append(spec)
    dirs = [d for d in answer.get("kernel_dirs") or [] if isinstance(d, str)]
    text = {name: answer.get(name) if isinstance(answer.get(name), str) else ""
            for name in ("prefix", "executable", "python_version")}
    return DiscoveryResult(site=site, specs=specs, warnings=warnings, kernel_dirs=dirs, **text)


def remote_spec(entry: Any, warnings: list[str]) -> RemoteSpec | None:
    """One listed spec, checked; None (and a warning naming the file) when it is not usable."""
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("name", "dir", "file")):
        warnings.append(f"a malformed entry in the listing was skipped: {entry!r:.200}")
        return None
    where = printable(entry["file"])
    text = entry.get("kernel_json")
    if not isinstance(text, str) or len(text) > MAX_KERNEL_JSON:
        warnings.append(f"{where}: skipped, no kernel.json text within {MAX_KERNEL_JSON} bytes")
        return None
    try:
        spec = json.loads(text)
    except RecursionError:
        warnings.append(f"{where}: skipped, its JSON is nested too deeply")
        return None
    except ValueError as exc:
        warnings.append(f"{where}: skipped, not valid JSON ({exc})")
        return None
    problem = spec_problem(spec)
    if problem:
        warnings.append(f"{where}: skipped, {problem}")
        return None
    resources = {}
    for name, encoded in (entry.get("resources") or {}).items():
        if name not in RESOURCES or not isinstance(encoded, str):
            continue
        try:
            data = base64.b64decode(encoded, validate=True)
        except (ValueError, binascii.Error):
            warnings.append(f"{printable(entry['dir'])}/{name}: skipped, garbled in transit")
            continue
        why = resource_problem(name, data)
        if why:
            warnings.append(f"{printable(entry['dir'])}/{name}: skipped, {why}")
            continue
        resources[name] = data
    return RemoteSpec(name=entry["name"], resource_dir=entry["dir"], kernel_file=entry["file"],
                      spec=spec, resources=resources)


def spec_problem(spec: Any) -> str:
    """Why ``spec`` (a parsed kernel.json) is not a kernelspec we can offer; '' if it is."""
    if not isinstance(spec, dict):
        return "it is not a JSON object"
    argv = spec.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return "its argv is not a non-empty list of strings"
    if any("\0" in a for a in argv):
        return "its argv holds a NUL character"
    for key in ("display_name", "language", "kernel_protocol_version"):
        if key in spec and not isinstance(spec[key], str):
            return f"its {key} is not a string"
    if len(spec.get("display_name", "")) > MAX_DISPLAY_NAME:
        return f"its display_name is longer than {MAX_DISPLAY_NAME} characters"
    env = spec.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        return "its env is not an object of strings"
    if any(not k or "=" in k or "\0" in k or "\0" in v for k, v in env.items()):
        return "its env has a variable name or value no environment can hold"
    if spec.get("interrupt_mode", "signal") not in ("signal", "message"):
        return "its interrupt_mode is neither 'signal' nor 'message'"
    if not isinstance(spec.get("metadata", {}), dict):
        return "its metadata is not an object"
    return ""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def resource_problem(name: str, data: bytes) -> str:
    """Why a logo is not served; '' if it is. Only PNGs are (an SVG can carry script, and filters
    of it miss namespaced or encoded forms: ``<s:script>`` passed ours)."""
    if not name.endswith(".png"):
        return "only PNG logos are served"
    return "" if data.startswith(PNG_SIGNATURE) else "not a PNG image"


__all__ = ["DiscoveryError", "DiscoveryResult", "RemoteSpec", "discover", "discover_sync", "parse_answer"]
