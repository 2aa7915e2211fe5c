/** The plugin of cancel.ts: JupyterLab's SessionContext patched once, at start. */
import { JupyterFrontEndPlugin } from '@jupyterlab/application';
import { SessionContext } from '@jupyterlab/apputils';

import { quietCancel } from './cancel';

export const quietCancelPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-hpc:quiet-cancel',
  description: 'Cancel in the SLURM resource dialog leaves the notebook open with no kernel, without an error box.',
  autoStart: true,
  activate: () => {
    quietCancel(SessionContext.prototype);
  }
};
