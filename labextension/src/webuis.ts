/**
 * The Cluster sidebar's "Web UIs" section: per running kernel, the ports it serves, each with
 * an Open link through the cluster proxy (/jupyter-hpc/proxy/<site>/<host>:<port>/).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IKernelWebUIs, webUIRows } from './webuis_model';

export async function fetchWebUIs(settings: ServerConnection.ISettings): Promise<IKernelWebUIs[]> {
  const url = URLExt.join(settings.baseUrl, 'jupyter-hpc/api/proxy/kernels');
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    throw new Error(`${response.status} ${response.statusText}`);
  }
  return ((await response.json()) as { kernels: IKernelWebUIs[] }).kernels;
}

export function renderWebUIs(kernels: IKernelWebUIs[]): HTMLElement {
  const section = document.createElement('section');
  section.className = 'jp-hpc-WebUIs';
  const heading = document.createElement('h3');
  heading.textContent = 'Web UIs of your kernels';
  section.appendChild(heading);
  const rows = webUIRows(kernels);
  if (!rows.length) {
    const none = document.createElement('p');
    none.textContent = 'No running kernel listens on a TCP port.';
    section.appendChild(none);
    return section;
  }
  const list = document.createElement('ul');
  for (const row of rows) {
    const item = document.createElement('li');
    item.dataset.port = String(row.port);
    const text = document.createElement('span');
    text.textContent = `${row.port} · ${row.what} · ${row.kernel} `;
    text.title = row.note;
    item.appendChild(text);
    if (row.href) {
      const open = document.createElement('a');
      open.className = 'jp-hpc-WebUIs-open';
      open.href = row.href;
      open.target = '_blank';
      open.rel = 'noopener';
      open.textContent = 'Open';
      open.title = `Open ${row.note} through the cluster proxy`;
      item.appendChild(open);
    } else {
      const why = document.createElement('em');
      why.textContent = row.note;
      item.appendChild(why);
    }
    list.appendChild(item);
  }
  section.appendChild(list);
  return section;
}
