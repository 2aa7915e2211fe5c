/** The plugin of landing.ts: the default file browser follows new items the server made elsewhere. */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';

import { followNewItems } from './landing';

export const landingPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-hpc:landing',
  description: 'A folder or file made at the top level lands in the home, and the file browser goes there.',
  autoStart: true,
  activate: (app: JupyterFrontEnd) => {
    void app.restored.then(() => {
      for (const widget of app.shell.widgets('left')) {
        const model = (widget as any).model;
        if (widget.id === 'filebrowser' && model?.manager?.newUntitled) {
          followNewItems(model.manager, model);
          return;
        }
      }
    });
  }
};
