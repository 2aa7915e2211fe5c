/**
 * The idle warning's words and timing (no JupyterLab imports: unit-tested). A SLURM target's
 * idle_timeout ends a kernel (and frees its job's nodes) once nothing has run in it for that
 * long; idle_warning seconds before, the server's status carries
 * ``idle_ends_in_seconds`` and the notebook says so, once per idle period, with "Keep it" (the
 * idle clock starts again; running a cell does the same). The notice goes away by itself once
 * the kernel is used again.
 */
import { IKernelStatus, formatDuration } from './model';

/** The warning's words: "idle for 55 min: this kernel and job 1234 end in 5 min". */
export function idleText(status: IKernelStatus): string {
  const idle = formatMinutes(status.idle_seconds ?? 0);
  const ends = formatMinutes(status.idle_ends_in_seconds ?? 0);
  const what = status.job_id ? `this kernel and job ${status.job_id}` : 'this kernel';
  const where = status.path ? ` (${status.path})` : '';
  return `Idle for ${idle}${where}: ${what} end in ${ends} to give the nodes back — keep it?`;
}

/** Whole minutes while there are some, else SLURM's H:MM:SS. */
export function formatMinutes(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return s >= 60 && s % 60 === 0 ? `${s / 60} min` : s >= 120 ? `${Math.round(s / 60)} min` : formatDuration(s);
}

/** Which kernels to warn now, and which warnings to withdraw (the kernel was used again). */
export function idleChanges(statuses: IKernelStatus[], warned: Set<string>): { warn: IKernelStatus[]; withdraw: string[] } {
  const due = new Map(statuses.filter(s => s.phase === 'running' && s.idle_ends_in_seconds !== null &&
    s.idle_ends_in_seconds !== undefined).map(s => [s.kernel_id, s]));
  return {
    warn: [...due.values()].filter(s => !warned.has(s.kernel_id)),
    withdraw: [...warned].filter(id => !due.has(id))
  };
}
