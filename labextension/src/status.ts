/**
 * The SLURM kernels' status: one poll of GET /jupyter-hpc/api/slurm/kernels for the whole
 * page (which costs the scheduler nothing: the server answers from the provisioners' own
 * squeue poll), a status bar item for the current notebook's kernel, and the offers to save
 * at 10 and 2 minutes before a job's walltime ends.
 */
import { Notification } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { SlurmAPI } from './api';
import { IKernelStatus, dueWarnings, formatDuration, statusText } from './model';

export class KernelStatusPoller {
  constructor(private api: SlurmAPI) {}

  get changed(): ISignal<this, IKernelStatus[]> {
    return this._changed;
  }

  get statuses(): IKernelStatus[] {
    return this._statuses;
  }

  /** Seconds of walltime left now, counted down from the last poll. */
  timeLeft(status: IKernelStatus): number | null {
    if (status.time_left_seconds === null || status.time_left_seconds === undefined) {
      return null;
    }
    return Math.max(0, status.time_left_seconds - (Date.now() - this._polledAt) / 1000);
  }

  start(): void {
    void this.poll();
  }

  /** Poll soon and often for a while (a start was just sent). */
  hurry(): void {
    this._hurryUntil = Date.now() + 120000;
    void this.poll();
  }

  async poll(): Promise<void> {
    window.clearTimeout(this._timer);
    try {
      const { kernels } = await this.api.kernels();
      this._statuses = kernels;
      this._polledAt = Date.now();
      this._changed.emit(kernels);
    } catch (error) {
      console.warn('jupyter-hpc: SLURM kernel status', error);
    }
    const busy = this._statuses.some(s => s.phase !== 'running') || Date.now() < this._hurryUntil;
    const delay = document.hidden ? 30000 : busy ? 1000 : 15000;
    this._timer = window.setTimeout(() => void this.poll(), delay);
  }

  private _statuses: IKernelStatus[] = [];
  private _polledAt = Date.now();
  private _hurryUntil = 0;
  private _timer = 0;
  private _changed = new Signal<this, IKernelStatus[]>(this);
}

/** What the status bar needs from the shell: the current notebook's path and kernel id. */
export interface ICurrentKernel {
  path(): string | null;
  kernelId(): string | null;
}

export class SlurmStatusItem extends Widget {
  constructor(private poller: KernelStatusPoller, private current: ICurrentKernel, private save: () => void) {
    super();
    this.addClass('jp-hpc-StatusItem');
    this.node.setAttribute('role', 'status');
    this.node.setAttribute('aria-live', 'polite');
    poller.changed.connect(() => this.refresh());
    this._ticker = window.setInterval(() => this.refresh(), 1000);
  }

  dispose(): void {
    window.clearInterval(this._ticker);
    super.dispose();
  }

  /** The status of the current notebook's kernel: by kernel id, else by session path (a start in the queue has no id yet). */
  currentStatus(): IKernelStatus | null {
    const statuses = this.poller.statuses;
    const id = this.current.kernelId();
    const path = this.current.path();
    return statuses.find(s => id && s.kernel_id === id) ??
      statuses.find(s => path && s.path === path && s.phase !== 'running') ??
      statuses.find(s => path && s.path === path) ?? null;
  }

  refresh(): void {
    for (const status of this.poller.statuses) {
      this.warn(status);
    }
    const status = this.currentStatus();
    if (!status) {
      this.node.textContent = '';
      this.node.title = '';
      this.hide();
      return;
    }
    this.show();
    const left = this.poller.timeLeft(status);
    this.node.textContent = `SLURM ${statusText(status, left)}`;
    this.node.dataset.phase = status.phase;
    this.node.title = [
      `${status.kernel_name}: ${status.state ?? ''}`,
      status.partition ? `partition ${status.partition}` : '',
      status.time_limit ? `time limit ${status.time_limit}` : ''
    ].filter(Boolean).join(', ');
    this.node.classList.toggle('jp-hpc-mod-ending', left !== null && left <= 600);
  }

  private warn(status: IKernelStatus): void {
    if (status.phase !== 'running' || !status.job_id) {
      return;
    }
    const left = this.poller.timeLeft(status);
    const given = this._warned.get(status.job_id) ?? new Set<number>();
    this._warned.set(status.job_id, given);
    for (const threshold of dueWarnings(left, given)) {
      given.add(threshold);
      for (const t of [600, 120]) {
        if (t >= threshold) {
          given.add(t);
        }
      }
      Notification.warning(
        `SLURM job ${status.job_id} (${status.path || status.kernel_name}) ends in ${formatDuration(left ?? 0)}: ` +
          'its kernel and unsaved state end with it.',
        {
          autoClose: false,
          actions: [{ label: 'Save now', caption: 'Save the notebook', callback: () => this.save() }]
        }
      );
    }
  }

  private _ticker: number;
  private _warned = new Map<string, Set<number>>();
}
