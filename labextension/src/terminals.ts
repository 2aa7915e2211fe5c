/**
 * Terminals on the cluster (the server side is jupyter_hpc.terminals): one launcher tile per
 * site when there are several ("Cori terminal"), "Terminal on this job's node" in the Kernel
 * menu for a kernel that runs in a SLURM job, and closing a terminal's tab ends its shell.
 *
 * A terminal is made with POST /jupyter-hpc/api/terminals and opened with JupyterLab's own
 * ``terminal:open`` by the name the server gave, so the terminal widget is JupyterLab's.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { IMainMenu } from '@jupyterlab/mainmenu';
import { ServerConnection } from '@jupyterlab/services';
import { terminalIcon } from '@jupyterlab/ui-components';

import { requestAPI } from './api';
import { ITerminalSite, jobTerminalRequest, terminalTiles } from './terminalSites';

export const CommandIDs = {
  onSite: 'jupyter-hpc:terminal',
  onJobNode: 'jupyter-hpc:terminal-on-job-node'
};

function request<T>(settings: ServerConnection.ISettings, init: RequestInit = {}): Promise<T> {
  return requestAPI<T>(settings, 'terminals', init);
}

export function activateTerminals(
  app: JupyterFrontEnd,
  launcher: ILauncher | null,
  mainMenu: IMainMenu | null,
  currentKernelId: () => string | null
): void {
  const settings = app.serviceManager.serverSettings;
  const labels = new Map<string, string>();

  const open = async (body: object): Promise<void> => {
    let model: { name: string };
    try {
      model = await request(settings, { method: 'POST', body: JSON.stringify(body) });
    } catch (error) {
      await showErrorMessage('Cannot open a terminal on the cluster', error as Error);
      return;
    }
    await app.commands.execute('terminal:open', { name: model.name });
  };

  app.commands.addCommand(CommandIDs.onSite, {
    label: args => (args.job ? `Terminal on job ${String(args.job)}'s node`
      : labels.get(String(args.site)) ?? `${String(args.site ?? 'Cluster')} terminal`),
    caption: args => `A login shell on ${labels.get(String(args.site)) ?? args.site}'s login node`,
    icon: args => (args.isPalette ? undefined : terminalIcon),
    // The launcher passes its folder (cwd): the shell starts there when the files are the site's.
    execute: args => open(args.job ? { site: String(args.site), job: String(args.job) }
      : { site: String(args.site), cwd: typeof args.cwd === 'string' ? args.cwd : '' })
  });

  app.commands.addCommand(CommandIDs.onJobNode, {
    label: "Terminal on this job's node",
    caption: "A shell inside the current kernel's SLURM job, on its first node",
    isEnabled: () => currentKernelId() !== null,
    execute: async () => {
      const body = jobTerminalRequest(currentKernelId());
      if (body) {
        await open(body);
      }
    }
  });
  mainMenu?.kernelMenu.addGroup([{ command: CommandIDs.onJobNode }], 100);

  // Closing a terminal's tab ends its shell on the cluster (JupyterLab would keep it running).
  app.commands.commandExecuted.connect((_, executed) => {
    if (executed.id === 'terminal:create-new' || executed.id === 'terminal:open') {
      void Promise.resolve(executed.result).then((widget: any) => {
        widget?.content?.setOption?.('shutdownOnClose', true);
      }).catch(() => undefined);
    }
  });

  if (launcher) {
    void request<{ sites: ITerminalSite[] }>(settings).then(({ sites }) => {
      for (const tile of terminalTiles(sites)) {
        labels.set(tile.site, tile.label);
        launcher.add({ command: CommandIDs.onSite, args: { site: tile.site }, category: 'Other', rank: tile.rank });
      }
    }).catch(() => undefined); // no sites with terminals here: no tiles
  }
}
