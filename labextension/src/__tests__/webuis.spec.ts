import { IKernelWebUIs, shortCommand, webUIRows } from '../webuis_model';

const kernels: IKernelWebUIs[] = [
  {
    kernel_id: 'k1', kernel_name: 'cori-knl-dask', site: 'cori', node: 'nid00042', job_id: '17',
    web_uis: [
      { port: 8787, address: '0.0.0.0', command: '/opt/venv/bin/python -m ipykernel_launcher -f x.json', host: 'nid00042',
        url: '/user/alice/jupyter-hpc/proxy/cori/nid00042:8787/', why_no_link: null },
      { port: 6006, address: '127.0.0.1', command: 'tensorboard --logdir runs', host: null, url: null,
        why_no_link: "listens on the node's loopback only" }
    ]
  },
  { kernel_id: 'k2', kernel_name: 'cori-login-python3', site: 'cori', node: 'login1', job_id: null, web_uis: [] }
];

describe('web UIs in the Cluster sidebar', () => {
  it('lists each port of each kernel, in order, with the proxy link or why there is none', () => {
    const rows = webUIRows(kernels);
    expect(rows.map(row => row.port)).toEqual([6006, 8787]);
    expect(rows[1].href).toBe('/user/alice/jupyter-hpc/proxy/cori/nid00042:8787/');
    expect(rows[1].kernel).toBe('cori-knl-dask (job 17 on nid00042)');
    expect(rows[1].note).toBe('nid00042:8787');
    expect(rows[0].href).toBeNull();
    expect(rows[0].note).toContain('loopback');
  });

  it('names a process by its program, briefly', () => {
    expect(shortCommand('/opt/venv/bin/python -m http.server 8000')).toBe('python -m http.server 8000');
    expect(shortCommand('x '.repeat(100), 10)).toHaveLength(10);
  });
});
