/**
 * The SLURM kernels' status: one poll of GET /jupyter-hpc/api/slurm/kernels for the whole
 * page (which costs the scheduler nothing: the server answers from the provisioners' own
 * squeue poll), a view of one notebook's kernel job (the status bar's for the current
 * notebook, each notebook toolbar's own) with Cancel while it waits, and the offers to save
 * at 10 and 2 minutes before a job's walltime ends.
 */
import { Dialog, Notification, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { ISignal, Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';

import { SlurmAPI } from './api';
import {
  IKernelStatus,
  SAVE_WARNINGS,
  cancellable,
  dueWarnings,
  findStatus,
  formatDuration,
  statusText
} from './model';

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
    const busy = this._statuses.some(s => s.phase !== 'running' || (s.idle_ends_in_seconds ?? null) !== null) ||
      Date.now() < this._hurryUntil;
    const delay = document.hidden ? 30000 : busy ? 1000 : 15000;
    this._timer = window.setTimeout(() => void this.poll(), delay);
  }

  private _statuses: IKernelStatus[] = [];
  private _polledAt = Date.now();
  private _hurryUntil = 0;
  private _timer = 0;
  private _changed = new Signal<this, IKernelStatus[]>(this);
}

/** Where a view finds its notebook's kernel: the session's path and kernel id. */
export interface ICurrentKernel {
  path(): string | null;
  kernelId(): string | null;
}

/** Ask, then cancel the job of a kernel that is still starting (scancel; the start then fails). */
export async function cancelStart(api: SlurmAPI, poller: KernelStatusPoller, status: IKernelStatus): Promise<void> {
  const answer = await showDialog({
    title: `Cancel job ${status.job_id}?`,
    body: `The kernel ${status.kernel_name} for ${status.path || 'this notebook'} has not started yet: ` +
      'its SLURM job is cancelled and the kernel start ends.',
    buttons: [Dialog.cancelButton({ label: 'Keep waiting' }), Dialog.warnButton({ label: 'Cancel job' })]
  });
  if (!answer.button.accept) {
    return;
  }
  let cancelled: { message?: string } | null = null;
  try {
    cancelled = (await api.cancelKernel(status.kernel_id)) as { message?: string };
  } catch (error) {
    await showErrorMessage('Cannot cancel the job', error as Error);
  }
  poller.hurry();
  if (cancelled?.message) {
    // The start no longer holds a request (it answered at once): say here how it ended.
    await showDialog({
      title: `Job ${status.job_id} cancelled`,
      body: cancelled.message,
      buttons: [Dialog.okButton({ label: 'OK' })]
    });
  }
}

/**
 * One notebook's SLURM kernel in words ("queued: job 12, Reason: Priority, est. start 14:05",
 * then "starting on nid00042", then the walltime left), with a Cancel button while the job
 * waits. The status bar shows one for the current notebook, each notebook's toolbar its own.
 */
export class SlurmStatusView extends Widget {
  constructor(protected poller: KernelStatusPoller, private current: ICurrentKernel,
              private onCancel: (status: IKernelStatus) => void, className: string) {
    super();
    this.addClass('jp-hpc-StatusView');
    this.addClass(className);
    this.node.setAttribute('role', 'status');
    this.label = document.createElement('span');
    this.label.className = 'jp-hpc-StatusView-text';
    this.label.setAttribute('aria-live', 'polite');
    this.cancelButton = document.createElement('button');
    this.cancelButton.type = 'button';
    this.cancelButton.className = 'jp-hpc-StatusView-cancel jp-Button jp-mod-styled jp-mod-warn';
    this.cancelButton.textContent = 'Cancel';
    this.cancelButton.addEventListener('click', event => {
      event.stopPropagation();
      const status = this.currentStatus();
      if (cancellable(status)) {
        this.onCancel(status as IKernelStatus);
      }
    });
    this.node.append(this.label, this.cancelButton);
    poller.changed.connect(this.refresh, this);
    this._ticker = window.setInterval(() => this.refresh(), 1000);
    this.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.clearInterval(this._ticker);
    this.poller.changed.disconnect(this.refresh, this);
    super.dispose();
  }

  currentStatus(): IKernelStatus | null {
    return findStatus(this.poller.statuses, this.current.kernelId(), this.current.path());
  }

  refresh(): void {
    const status = this.currentStatus();
    if (!status) {
      this.label.textContent = '';
      this.node.title = '';
      delete this.node.dataset.phase;
      this.hide();
      return;
    }
    this.show();
    const left = this.poller.timeLeft(status);
    this.label.textContent = `SLURM ${statusText(status, left)}`;
    this.node.dataset.phase = status.phase;
    this.node.title = [
      `${status.kernel_name}: ${status.state ?? ''}`,
      status.partition ? `partition ${status.partition}` : '',
      status.time_limit ? `time limit ${status.time_limit}` : ''
    ].filter(Boolean).join(', ');
    this.node.classList.toggle('jp-hpc-mod-ending', left !== null && left <= 600);
    const canCancel = cancellable(status);
    this.cancelButton.hidden = !canCancel;
    this.cancelButton.setAttribute('aria-label', canCancel ? `Cancel SLURM job ${status.job_id}` : 'Cancel');
  }

  private label: HTMLSpanElement;
  private cancelButton: HTMLButtonElement;
  private _ticker: number;
}

/**
 * The offers to save at 10 and 2 minutes before a kernel job's walltime ends: one watcher for
 * the page (however many views show the job), each offer once per job.
 */
export class WalltimeWarnings {
  constructor(private poller: KernelStatusPoller, private save: (status: IKernelStatus) => void) {
    poller.changed.connect(() => this.check());
    window.setInterval(() => this.check(), 1000);
  }

  check(): void {
    for (const status of this.poller.statuses) {
      if (status.phase !== 'running' || !status.job_id) {
        continue;
      }
      const left = this.poller.timeLeft(status);
      const given = this._warned.get(status.job_id) ?? new Set<number>();
      this._warned.set(status.job_id, given);
      for (const threshold of dueWarnings(left, given)) {
        for (const t of SAVE_WARNINGS) {
          if (t >= threshold) {
            given.add(t);
          }
        }
        Notification.warning(
          `SLURM job ${status.job_id} (${status.path || status.kernel_name}) ends in ${formatDuration(left ?? 0)}: ` +
            'its kernel and unsaved state end with it.',
          {
            autoClose: false,
            actions: [{ label: 'Save now', caption: 'Save the notebook', callback: () => this.save(status) }]
          }
        );
      }
    }
  }

  private _warned = new Map<string, Set<number>>();
}
