/**
 * The idle warning in the notebook: once per idle period, with "Keep it" (see idle_model.ts).
 */
import { Notification } from '@jupyterlab/apputils';

import { SlurmAPI } from './api';
import { idleChanges, idleText } from './idle_model';
import { IKernelStatus } from './model';

export class IdleWarnings {
  constructor(private api: SlurmAPI, private statuses: () => IKernelStatus[], changed: { connect: (f: () => void) => void }) {
    changed.connect(() => this.check());
  }

  check(): void {
    const { warn, withdraw } = idleChanges(this.statuses(), new Set(this._shown.keys()));
    for (const kernelId of withdraw) {
      Notification.dismiss(this._shown.get(kernelId));
      this._shown.delete(kernelId);
    }
    for (const status of warn) {
      const id = Notification.warning(idleText(status), {
        autoClose: false,
        actions: [{
          label: 'Keep it',
          caption: 'Keep this kernel and its job: the idle clock starts again',
          callback: () => {
            void this.api.keepKernel(status.kernel_id).catch(error =>
              Notification.error(`Could not keep the kernel: ${(error as Error).message}`));
          }
        }]
      });
      this._shown.set(status.kernel_id, id);
    }
  }

  private _shown = new Map<string, string>();
}
