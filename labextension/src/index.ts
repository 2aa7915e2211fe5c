/**
 * jupyter-hpc's JupyterLab extension.
 *
 * JupyterLab has no way to pass parameters with a kernel start (its requests carry a
 * kernelspec name and a path only). So this extension watches the page's own requests, at
 * the one place they all pass (the ServerConnection settings' fetch): a request that starts a
 * kernel of a SLURM kernelspec (launcher tile, opening a notebook, the kernel picker; not a
 * restart) first shows the resource dialog and PUTs the choice to the server, keyed by that
 * kernelspec and session path; the server hands it to that kernel's provisioner only. Then
 * the request goes on unchanged. Cancel in the dialog cancels the start.
 */
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { SessionAPI } from '@jupyterlab/services';
import { IStatusBar } from '@jupyterlab/statusbar';

import { SlurmAPI } from './api';
import { CANCELLED_STATUS } from './cancel';
import { quietCancelPlugin } from './cancel_plugin';
import { landingPlugin } from './landing_plugin';
import { askResources } from './dialog';
import { ChoiceMemory, IChoice, IKernelStart, IKernelStatus, isSlurmSpec, kernelStartOf } from './model';
import { ClusterSidebar } from './sidebar';
import { IdleWarnings } from './idle';
import { KernelStatusPoller, SlurmStatusView, WalltimeWarnings, cancelStart } from './status';
import { activateTerminals } from './terminals';

const PLUGIN_ID = 'jupyter-hpc:plugin';

function cancelled(message: string): Response {
  return new Response(JSON.stringify({ message, reason: 'cancelled' }), {
    status: 400,
    statusText: CANCELLED_STATUS,
    headers: { 'Content-Type': 'application/json' }
  });
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'SLURM resources at kernel start, queue state and walltime in the status bar, a Cluster sidebar.',
  autoStart: true,
  optional: [IStatusBar, ILabShell, ILauncher, IMainMenu],
  activate: (app: JupyterFrontEnd, statusBar: IStatusBar | null, labShell: ILabShell | null,
             launcher: ILauncher | null, mainMenu: IMainMenu | null) => {
    const settings = app.serviceManager.serverSettings;
    const api = new SlurmAPI(settings);
    const memory = new ChoiceMemory(window.localStorage);
    const poller = new KernelStatusPoller(api);

    const isSlurm = async (name: string): Promise<boolean> => {
      const specs = app.serviceManager.kernelspecs;
      if (!specs.specs) {
        await specs.ready;
      }
      return isSlurmSpec(specs.specs?.kernelspecs[name] as any);
    };

    /** The choice for this start (asking unless "don't ask again"), sent to the server; null: cancelled. */
    const choose = async (start: IKernelStart, path: string): Promise<IChoice | null> => {
      let options;
      try {
        options = await api.options(start.kernelName);
      } catch (error) {
        await showErrorMessage('Cannot read the SLURM options of the site',
          `${(error as Error).message}\nThe kernel starts with its kernelspec's own settings.`);
        return {};
      }
      let remembered = memory.dontAsk(start.kernelName) ? memory.last(start.kernelName) : null;
      let refused: { choice: IChoice; message: string } | undefined;
      for (;;) {
        let choice: IChoice;
        let dontAsk = false;
        if (remembered) {
          choice = remembered;
          dontAsk = true;
          remembered = null;
        } else {
          const result = await askResources(options, memory, refused);
          if (!result) {
            return null;
          }
          choice = result.choice;
          dontAsk = result.dontAsk;
        }
        try {
          const accepted = await api.choose(start.kernelName, path, choice);
          memory.remember(start.kernelName, choice);
          memory.setDontAsk(start.kernelName, dontAsk);
          return accepted.resources;
        } catch (error) {
          // Asked again, with the server's reason in the form (a remembered choice, too: the site changed).
          memory.setDontAsk(start.kernelName, false);
          refused = { choice, message: (error as Error).message };
        }
      }
    };

    const originalFetch = settings.fetch;
    const fetchWithDialog = async (input: RequestInfo, init?: RequestInit): Promise<Response> => {
      const request = input instanceof Request ? input : new Request(input as any, init);
      if (request.method !== 'POST' && request.method !== 'PATCH') {
        return originalFetch.call(null, request);
      }
      const start = kernelStartOf(request.method, request.url, await request.clone().text());
      if (!start || !(await isSlurm(start.kernelName))) {
        return originalFetch.call(null, request);
      }
      let path = start.path;
      if (path === null && start.sessionId) {
        try {
          path = (await SessionAPI.getSessionModel(start.sessionId, settings)).path;
        } catch {
          path = '';
        }
      }
      const choice = await choose(start, path ?? '');
      if (choice === null) {
        return cancelled('The kernel start was cancelled in the SLURM resource dialog.');
      }
      poller.hurry();
      return originalFetch.call(null, request);
    };
    (settings as any).fetch = fetchWithDialog;

    const sidebar = new ClusterSidebar(api, (site, job) =>
      void app.commands.execute('jupyter-hpc:terminal', { site, job }));
    app.shell.add(sidebar, 'left', { rank: 750 });
    app.commands.addCommand('jupyter-hpc:show-cluster', {
      label: 'Show the Cluster sidebar',
      execute: () => app.shell.activateById(sidebar.id)
    });

    const cancel = (status: IKernelStatus) => void cancelStart(api, poller, status);
    if (statusBar) {
      const current = () => (labShell?.currentWidget ?? app.shell.currentWidget) as any;
      const item = new SlurmStatusView(poller, {
        path: () => current()?.sessionContext?.path ?? null,
        kernelId: () => current()?.sessionContext?.session?.kernel?.id ?? null
      }, cancel, 'jp-hpc-StatusItem');
      statusBar.registerStatusItem('jupyter-hpc:slurm-status', {
        item,
        align: 'left',
        rank: 5,
        isActive: () => true
      });
      labShell?.currentChanged.connect(() => item.refresh());
    }

    // Each notebook's toolbar shows its own kernel's job, next to the kernel name.
    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: any) => {
        const view = new SlurmStatusView(poller, {
          path: () => panel.sessionContext?.path ?? null,
          kernelId: () => panel.sessionContext?.session?.kernel?.id ?? null
        }, cancel, 'jp-hpc-ToolbarItem');
        if (!panel.toolbar.insertBefore('kernelName', 'jupyter-hpc-slurm', view)) {
          panel.toolbar.addItem('jupyter-hpc-slurm', view);
        }
        panel.disposed.connect(() => view.dispose());
        return view;
      }
    });

    // "Save now" in a walltime warning saves the notebooks of that kernel's session.
    new WalltimeWarnings(poller, status => {
      for (const widget of app.shell.widgets('main')) {
        const context = (widget as any).context;
        if (context && context.path === status.path) {
          void context.save();
        }
      }
    });
    new IdleWarnings(api, () => poller.statuses, poller.changed);
    poller.start();

    // The server answers its first /api/kernelspecs at once, before the sites' first lists are
    // in (it never waits on SSH): once they are, the launcher asks again.
    void api.firstKernelspecs().then(
      () => app.serviceManager.kernelspecs.refreshSpecs(),
      error => console.warn('jupyter-hpc: first kernelspec lists', error)
    );

    // Terminals on the cluster: a tile per site, "Terminal on this job's node" in the Kernel menu.
    activateTerminals(app, launcher, mainMenu, () => {
      const widget = (labShell?.currentWidget ?? app.shell.currentWidget) as any;
      return widget?.sessionContext?.session?.kernel?.id ?? null;
    });
  }
};

export default [plugin, quietCancelPlugin, landingPlugin];
