/**
 * Which launcher tiles open a terminal on which site (pure, for the jest tests): one per site
 * that offers terminals, "Cori terminal", but only when there are several; with one site,
 * JupyterLab's own Terminal tile opens a shell there.
 */
export interface ITerminalSite {
  name: string;
  display_name: string;
  terminals: boolean;
}

export interface ITerminalTile {
  site: string;
  label: string;
  rank: number;
}

export function terminalTiles(sites: ITerminalSite[]): ITerminalTile[] {
  const offered = sites.filter(site => site.terminals);
  if (offered.length < 2) {
    return [];
  }
  return offered.map((site, index) => ({ site: site.name, label: `${site.display_name} terminal`, rank: index }));
}

/** The body of POST /jupyter-hpc/api/terminals for a terminal on a kernel's job node. */
export function jobTerminalRequest(kernelId: string | null | undefined): { kernel_id: string } | null {
  return kernelId ? { kernel_id: kernelId } : null;
}
