import { jobTerminalRequest, terminalTiles } from '../terminalSites';

const site = (name: string, display_name: string, terminals = true) => ({ name, display_name, terminals });

describe('terminalTiles', () => {
  it('gives one tile per site offering terminals when there are several', () => {
    expect(terminalTiles([site('cori', 'Cori'), site('hopper', 'Hopper'), site('locked', 'Locked', false)])).toEqual([
      { site: 'cori', label: 'Cori terminal', rank: 0 },
      { site: 'hopper', label: 'Hopper terminal', rank: 1 }
    ]);
  });

  it("leaves one site to JupyterLab's own Terminal tile", () => {
    expect(terminalTiles([site('cori', 'Cori')])).toEqual([]);
    expect(terminalTiles([site('cori', 'Cori'), site('locked', 'Locked', false)])).toEqual([]);
    expect(terminalTiles([])).toEqual([]);
  });
});

describe('jobTerminalRequest', () => {
  it("asks for the current kernel's job, or nothing without a kernel", () => {
    expect(jobTerminalRequest('k-1')).toEqual({ kernel_id: 'k-1' });
    expect(jobTerminalRequest(null)).toBeNull();
  });
});
