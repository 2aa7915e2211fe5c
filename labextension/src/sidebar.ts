/**
 * The "Cluster" sidebar: the user's jobs on each site (the magics' typed squeue, served by
 * GET /jupyter-hpc/api/slurm/jobs, shared by all browsers for ten seconds), kernel jobs
 * marked, each with a Cancel button that asks first.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { IJobsListing, SlurmAPI } from './api';
import { formatDuration } from './model';
import { fetchWebUIs, renderWebUIs } from './webuis';

export const clusterIcon = new LabIcon({
  name: 'jupyter-hpc:cluster',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="3" width="18" height="5" rx="1"/><rect x="3" y="10" width="18" height="5" rx="1"/>' +
    '<rect x="3" y="17" width="18" height="4" rx="1"/></g></svg>'
});

export class ClusterSidebar extends Widget {
  /** ``openTerminal(site, jobId)``: a shell inside a running job (jupyter-hpc's terminals). */
  constructor(private api: SlurmAPI, private openTerminal?: (site: string, jobId: string) => void) {
    super();
    this.id = 'jupyter-hpc-cluster';
    this.title.icon = clusterIcon;
    this.title.caption = 'Cluster: your SLURM jobs';
    this.addClass('jp-hpc-Cluster');
    const header = document.createElement('header');
    const title = document.createElement('h2');
    title.textContent = 'Cluster';
    const refresh = document.createElement('button');
    refresh.className = 'jp-Button jp-mod-styled jp-mod-reject';
    refresh.textContent = 'Refresh';
    refresh.addEventListener('click', () => void this.load(true));
    header.append(title, refresh);
    this.body = document.createElement('div');
    this.body.setAttribute('aria-live', 'polite');
    this.node.append(header, this.body);
  }

  protected onAfterShow(): void {
    window.clearInterval(this._timer);
    if (!this.isVisible) {
      return; // JupyterLab's side panels may tell a folded panel it is shown: it lists nothing then
    }
    void this.load();
    this._timer = window.setInterval(() => {
      if (this.isVisible) {
        void this.load();
      }
    }, 15000);
  }

  protected onAfterHide(): void {
    window.clearInterval(this._timer);
  }

  async load(refresh = false): Promise<void> {
    const webUIs = fetchWebUIs(this.api.settings);
    try {
      this.render(await this.api.jobs(refresh));
    } catch (error) {
      this.body.textContent = `Cannot list jobs: ${(error as Error).message}`;
    }
    try {
      this.body.appendChild(renderWebUIs(await webUIs));
    } catch (error) {
      this.body.append(`Cannot list the kernels' web UIs: ${(error as Error).message}`);
    }
  }

  render(listing: IJobsListing): void {
    this.body.replaceChildren();
    if (!listing.sites.length) {
      this.body.textContent = 'No SLURM site is configured.';
    }
    for (const site of listing.sites) {
      const section = document.createElement('section');
      const heading = document.createElement('h3');
      heading.textContent = site.site;
      section.appendChild(heading);
      if (site.error) {
        const error = document.createElement('p');
        error.className = 'jp-hpc-Cluster-error';
        error.textContent = site.error;
        section.appendChild(error);
      } else if (!site.jobs.length) {
        const none = document.createElement('p');
        none.textContent = 'No jobs.';
        section.appendChild(none);
      } else {
        section.appendChild(this.table(site.site, site.jobs));
      }
      this.body.appendChild(section);
    }
  }

  private table(site: string, jobs: { [key: string]: any }[]): HTMLTableElement {
    const table = document.createElement('table');
    table.className = 'jp-hpc-Cluster-jobs';
    const head = table.createTHead().insertRow();
    for (const name of ['Job', 'Name', 'State', 'Partition', 'Time', 'Node / Reason', '']) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = name;
      head.appendChild(th);
    }
    const body = table.createTBody();
    for (const job of jobs) {
      const row = body.insertRow();
      row.dataset.jobId = String(job.JOBID);
      const cells = [
        String(job.JOBID),
        `${job.NAME ?? ''}${job.kernel_id ? ' (kernel)' : ''}`,
        String(job.STATE ?? ''),
        String(job.PARTITION ?? ''),
        `${formatDuration(job.TIME ?? 0)} / ${job.TIME_LIMIT !== null && job.TIME_LIMIT !== undefined ? formatDuration(job.TIME_LIMIT) : '∞'}`,
        String(job.STATE === 'RUNNING' ? job.NODELIST ?? '' : job.REASON ?? '')
      ];
      for (const text of cells) {
        row.insertCell().textContent = text;
      }
      if (job.kernel_id) {
        row.classList.add('jp-hpc-mod-kernel');
      }
      const cancel = document.createElement('button');
      cancel.className = 'jp-Button jp-mod-styled jp-mod-warn';
      cancel.textContent = 'Cancel';
      cancel.setAttribute('aria-label', `Cancel job ${job.JOBID}`);
      cancel.addEventListener('click', () => void this.cancel(site, String(job.JOBID), !!job.kernel_id));
      const actions = row.insertCell();
      if (this.openTerminal && job.STATE === 'RUNNING') {
        const open = this.openTerminal;
        const terminal = document.createElement('button');
        terminal.className = 'jp-Button jp-mod-styled jp-mod-reject';
        terminal.textContent = 'Terminal';
        terminal.title = "A shell inside this job, on its first node";
        terminal.setAttribute('aria-label', `Terminal on job ${job.JOBID}'s node`);
        terminal.addEventListener('click', () => open(site, String(job.JOBID)));
        actions.appendChild(terminal);
      }
      actions.appendChild(cancel);
    }
    return table;
  }

  private async cancel(site: string, jobId: string, kernel: boolean): Promise<void> {
    const answer = await showDialog({
      title: `Cancel job ${jobId}?`,
      body: kernel ? 'This job runs a kernel: the kernel is shut down and its state is lost.' : `scancel ${jobId} on ${site}.`,
      buttons: [Dialog.cancelButton({ label: 'Keep' }), Dialog.warnButton({ label: 'Cancel job' })]
    });
    if (!answer.button.accept) {
      return;
    }
    try {
      await this.api.cancelJob(site, jobId);
    } catch (error) {
      await showErrorMessage('Cannot cancel the job', error as Error);
    }
    await this.load(true);
  }

  private body: HTMLDivElement;
  private _timer = 0;
}
