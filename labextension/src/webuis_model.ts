/**
 * The web UIs each running cluster kernel serves (GET /jupyter-hpc/api/proxy/kernels: the
 * listening TCP ports of the kernel's process tree on its node), as the Cluster sidebar lists
 * them: one row per port, with the cluster proxy's URL to open it, or why there is none.
 */

export interface IWebUI {
  port: number;
  address: string;
  command: string;
  host: string | null;
  url: string | null;
  why_no_link: string | null;
}

export interface IKernelWebUIs {
  kernel_id: string;
  kernel_name: string;
  site: string;
  node: string | null;
  job_id: string | null;
  web_uis: IWebUI[];
}

export interface IWebUIRow {
  kernel: string;
  port: number;
  what: string;
  href: string | null;
  note: string;
}

/** A process's command line as a short label: the program and its first words. */
export function shortCommand(command: string, max = 60): string {
  const words = command.trim().split(/\s+/).filter(Boolean);
  const text = words.map((word, index) => (index === 0 ? word.split('/').pop() ?? word : word)).join(' ');
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The rows to show, kernels in the order given, ports in ascending order. */
export function webUIRows(kernels: IKernelWebUIs[]): IWebUIRow[] {
  const rows: IWebUIRow[] = [];
  for (const kernel of kernels) {
    const where = kernel.job_id ? `job ${kernel.job_id} on ${kernel.node ?? '?'}` : `${kernel.site} login node`;
    const label = `${kernel.kernel_name} (${where})`;
    for (const ui of [...kernel.web_uis].sort((a, b) => a.port - b.port)) {
      rows.push({
        kernel: label,
        port: ui.port,
        what: shortCommand(ui.command),
        href: ui.url,
        note: ui.url ? `${ui.host}:${ui.port}` : ui.why_no_link ?? 'not reachable through the proxy'
      });
    }
  }
  return rows;
}
