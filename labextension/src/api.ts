/**
 * The server extension's REST API (/jupyter-hpc/api/slurm/…), through JupyterLab's own
 * ServerConnection: the same base URL, token and XSRF header as every other request.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { IChoice, IKernelStatus, ISiteOptions } from './model';

export interface IJobsListing {
  sites: { site: string; error: string; jobs: { [key: string]: any }[] }[];
}

/**
 * A JSON request to ``jupyter-hpc/api/<path>``; a failure throws the server's own message
 * (its JSON ``message``, else the text it answered, else the HTTP status).
 */
export async function requestAPI<T>(
  settings: ServerConnection.ISettings,
  path: string,
  init: RequestInit = {}
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'jupyter-hpc/api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { message: text };
  }
  if (!response.ok) {
    throw new Error(body?.message || `${response.status} ${response.statusText}`);
  }
  return body as T;
}

export class SlurmAPI {
  constructor(readonly settings: ServerConnection.ISettings) {}

  request<T>(path: string, init: RequestInit = {}): Promise<T> {
    return requestAPI<T>(this.settings, `slurm/${path}`, init);
  }

  options(kernelName: string, refresh = false): Promise<ISiteOptions> {
    return this.request(`${encodeURIComponent(kernelName)}/options${refresh ? '?refresh=1' : ''}`);
  }

  /** The checked choice for the next start of ``kernelName`` from the session at ``path``. */
  choose(kernelName: string, path: string, resources: IChoice): Promise<{ resources: IChoice }> {
    return this.request(`pending/${encodeURIComponent(kernelName)}`, {
      method: 'PUT',
      body: JSON.stringify({ path, resources })
    });
  }

  async kernels(): Promise<{ kernels: IKernelStatus[]; now: number }> {
    return this.request('kernels');
  }

  cancelKernel(kernelId: string): Promise<unknown> {
    return this.request(`kernels/${encodeURIComponent(kernelId)}`, { method: 'DELETE' });
  }

  /** The idle warning's "Keep it": the kernel's idle clock starts again. */
  keepKernel(kernelId: string): Promise<unknown> {
    return this.request(`kernels/${encodeURIComponent(kernelId)}/keep`, { method: 'POST' });
  }

  /** Resolves once the sites' first kernelspec lists are in (or after ``timeout`` seconds). */
  async firstKernelspecs(timeout = 60): Promise<{ complete: boolean }> {
    const url = URLExt.join(this.settings.baseUrl, 'jupyter-hpc/api/kernelspecs/first') + `?timeout=${timeout}`;
    const response = await ServerConnection.makeRequest(url, {}, this.settings);
    if (!response.ok) {
      throw new Error(`${response.status} ${response.statusText}`);
    }
    return response.json();
  }

  jobs(refresh = false): Promise<IJobsListing> {
    return this.request(`jobs${refresh ? '?refresh=1' : ''}`);
  }

  cancelJob(site: string, jobId: string): Promise<unknown> {
    return this.request(`jobs/${encodeURIComponent(site)}/${encodeURIComponent(jobId)}`, { method: 'DELETE' });
  }
}
