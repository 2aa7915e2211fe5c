"""Where each SLURM kernel of this server is, in the words the status bar uses.

Read only from what the provisioners already know: the state their site's one squeue poll
last saw (:attr:`SlurmQueue.latest`) while a job waits, and the state seen when it began to
run. Answering costs the scheduler nothing, however many browsers ask how often.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..provisioners.slurm_provisioner import SlurmProvisioner
from ..slurm.states import RUNNING, WAITING, JobState
from ..slurm.times import NO_LIMIT, duration_seconds


def session_path(kwargs: dict[str, Any], root_dir: str) -> str:
    """The session's file as an API path, from the ``JPY_SESSION_NAME`` jupyter_server puts in
    a session kernel's environment (an OS path under ``root_dir``), else ''."""
    name = str((kwargs.get("env") or {}).get("JPY_SESSION_NAME") or "")
    if name and root_dir and os.path.isabs(name):
        relative = os.path.relpath(name, root_dir)
        if not relative.startswith(".."):
            return relative.replace(os.sep, "/")
    return name


def _seen_state(provisioner: SlurmProvisioner) -> JobState | None:
    state = provisioner.queue_state
    if state is not None and provisioner.queue is not None:
        state = provisioner.queue.latest.get(state.job_id, state)
    return state


def kernel_status(kernel_id: str, km: Any, now: float | None = None) -> dict[str, Any] | None:
    """One SLURM kernel's job as the front end shows it; None if ``km`` runs no SLURM kernel."""
    provisioner = getattr(km, "provisioner", None)
    if not isinstance(provisioner, SlurmProvisioner):
        return None
    now = time.time() if now is None else now
    state = _seen_state(provisioner)
    ready = km.ready.done() and not km.ready.cancelled() and km.ready.exception() is None \
        if getattr(km, "ready", None) is not None else True
    failed = getattr(km, "ready", None) is not None and km.ready.done() and not ready
    if state is None:
        phase = "submitting" if not ready else "running"
    elif failed:
        phase = "failed"
    elif state.state in WAITING:
        phase = "queued"
    elif state.state == RUNNING and not ready:
        phase = "starting"
    elif state.state == RUNNING:
        phase = "running"
    else:
        phase = "ended"
    left = duration_seconds(state.time_left) if state is not None and state.time_left else None
    left = None if left == NO_LIMIT else left
    if left is not None and state is not None and state.state == RUNNING and state.seen:
        left = max(0, int(left - (now - state.seen)))
    idle = getattr(getattr(km, "parent", None), "idle", None)
    return {
        "kernel_id": kernel_id,
        "kernel_name": getattr(km, "kernel_name", ""),
        "path": getattr(km, "hpc_session_path", ""),
        "phase": phase,
        "job_id": state.job_id if state else None,
        "state": state.state if state else None,
        "reason": state.reason if state and state.reason not in ("None", "") else "",
        "partition": state.partition if state else "",
        "node": state.nodes if state and state.state == RUNNING else "",
        "est_start": state.start if state and state.state in WAITING and state.start not in ("N/A", "") else "",
        "time_limit": state.time_limit if state else "",
        "time_left_seconds": left if phase in ("running", "starting") else None,
        "resources": dict(getattr(km, "hpc_resources", None) or {}),
        "seen": state.seen if state else None,
        "error": str(getattr(km, "reason", "") or "") if failed else "",
        **(idle.status(kernel_id, km) if idle is not None else
           {"idle_timeout": None, "idle_seconds": None, "idle_ends_in_seconds": None}),
    }


def kernel_statuses(kernel_manager: Any) -> list[dict[str, Any]]:
    """Every SLURM kernel of the mapping, started or still starting."""
    managers = dict(getattr(kernel_manager, "starting_kernels", {}) or {})
    managers.update(getattr(kernel_manager, "_kernels", {}))
    now = time.time()
    out = []
    for kernel_id, km in managers.items():
        status = kernel_status(kernel_id, km, now)
        if status is not None:
            out.append(status)
    return out
