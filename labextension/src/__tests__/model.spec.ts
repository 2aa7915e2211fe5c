import {
  ChoiceMemory,
  IKernelStatus,
  cancellable,
  findStatus,
  timeHint,
  ISiteOptions,
  IStorage,
  cleanChoice,
  dueWarnings,
  formatDuration,
  formatLimit,
  formatStart,
  initialChoice,
  isSlurmSpec,
  kernelStartOf,
  slurmSeconds,
  statusText,
  validateChoice
} from '../model';

const options: ISiteOptions = {
  kernel_name: 'knl',
  display_name: 'Cori: KNL',
  site: 'cori',
  user: 'alice',
  partitions: [
    { name: 'debug', default: true, state: 'UP', max_time: 30, default_time: null, max_nodes: 4, total_nodes: 8,
      cpus_per_node: 68, gpus_per_node: 0, features: ['knl'] },
    { name: 'regular', default: false, state: 'UP', max_time: 60, default_time: null, max_nodes: null, total_nodes: 2,
      cpus_per_node: 64, gpus_per_node: 4, features: [] }
  ],
  accounts: ['m1234', 'm5678'],
  default_account: 'm1234',
  qos: ['normal'],
  associations: [
    { account: 'm1234', partition: '', qos: ['normal'], default_qos: '', max_time: null, max_nodes: null },
    { account: 'm5678', partition: 'regular', qos: ['normal'], default_qos: '', max_time: 20, max_nodes: null }
  ],
  defaults: { partition: '', time: '00:10:00', nodes: 1, gpus: 0 }
};

function status(over: Partial<IKernelStatus>): IKernelStatus {
  return {
    kernel_id: 'k', kernel_name: 'knl', path: 'a.ipynb', phase: 'queued', job_id: '1234', state: 'PENDING',
    reason: 'Priority', partition: 'regular', node: '', est_start: '', time_limit: '5:00', time_left_seconds: null,
    ...over
  };
}

class MemoryStorage implements IStorage {
  items = new Map<string, string>();
  getItem(key: string) { return this.items.has(key) ? this.items.get(key)! : null; }
  setItem(key: string, value: string) { this.items.set(key, value); }
  removeItem(key: string) { this.items.delete(key); }
}

describe('kernelStartOf', () => {
  it('sees a new session with a kernel (launcher tile, opening a notebook)', () => {
    expect(kernelStartOf('POST', 'http://h/lab/api/sessions?1', JSON.stringify({
      path: 'dir/Untitled.ipynb', type: 'notebook', name: '', kernel: { name: 'knl' } })))
      .toEqual({ kernelName: 'knl', path: 'dir/Untitled.ipynb', sessionId: null });
    // JupyterLab 4: a placeholder path until the kernel is up; the file is the folder plus the name.
    expect(kernelStartOf('POST', '/api/sessions', JSON.stringify({
      path: 'dir/9b2f1c0e-uuid', type: 'notebook', name: 'run.ipynb', kernel: { name: 'knl' } }))?.path)
      .toBe('dir/run.ipynb');
    expect(kernelStartOf('POST', '/api/sessions', JSON.stringify({
      path: '9b2f1c0e-uuid', type: 'notebook', name: 'run.ipynb', kernel: { name: 'knl' } }))?.path)
      .toBe('run.ipynb');
  });
  it('sees the kernel picker changing a session\'s kernel', () => {
    expect(kernelStartOf('PATCH', '/api/sessions/abc', JSON.stringify({ kernel: { name: 'knl' } })))
      .toEqual({ kernelName: 'knl', path: null, sessionId: 'abc' });
  });
  it('sees a bare kernel start', () => {
    expect(kernelStartOf('POST', '/api/kernels', JSON.stringify({ name: 'knl', path: 'x' })))
      .toEqual({ kernelName: 'knl', path: 'x', sessionId: null });
  });
  it('leaves restarts, joins of an existing kernel, renames and other requests alone', () => {
    expect(kernelStartOf('POST', '/api/kernels/abc/restart', '{}')).toBeNull();
    expect(kernelStartOf('POST', '/api/sessions', JSON.stringify({ path: 'a', kernel: { id: 'k1', name: 'knl' } }))).toBeNull();
    expect(kernelStartOf('PATCH', '/api/sessions/abc', JSON.stringify({ path: 'renamed.ipynb' }))).toBeNull();
    expect(kernelStartOf('GET', '/api/sessions', null)).toBeNull();
    expect(kernelStartOf('POST', '/api/sessions', 'not json')).toBeNull();
  });
});

describe('isSlurmSpec', () => {
  it('is true only for the hpc-slurm provisioner', () => {
    expect(isSlurmSpec({ metadata: { kernel_provisioner: { provisioner_name: 'hpc-slurm', config: {} } } })).toBe(true);
    expect(isSlurmSpec({ metadata: { kernel_provisioner: { provisioner_name: 'hpc-ssh' } } })).toBe(false);
    expect(isSlurmSpec({})).toBe(false);
    expect(isSlurmSpec(null)).toBe(false);
  });
});

describe('times', () => {
  it('reads SLURM times as sbatch does', () => {
    expect(slurmSeconds('30')).toBe(1800);
    expect(slurmSeconds('30:00')).toBe(1800);
    expect(slurmSeconds('00:05:00')).toBe(300);
    expect(slurmSeconds('1-02:00:00')).toBe(93600);
    expect(slurmSeconds('2-00')).toBe(172800);
    expect(slurmSeconds('UNLIMITED')).toBeNull();
    expect(slurmSeconds('1h')).toBeNull();
  });
  it('writes durations, limits and start times', () => {
    expect(formatDuration(299)).toBe('0:04:59');
    expect(formatDuration(93784)).toBe('1-02:03:04');
    expect(formatDuration(-5)).toBe('0:00:00');
    expect(formatLimit(60)).toBe('60 min');
    expect(formatLimit(1500)).toBe('1 d 1 h');
    expect(formatLimit(null)).toBe('no limit');
    expect(formatStart('2026-12-02T14:05:00', new Date(2026, 11, 2, 9))).toBe('14:05');
    expect(formatStart('2026-12-03T14:05:00', new Date(2026, 11, 2, 9))).toBe('2026-12-03 14:05');
  });
});

describe('statusText', () => {
  it('says queued with the job, Reason and expected start', () => {
    expect(statusText(status({ est_start: `${new Date().toISOString().slice(0, 10)}T14:05:00` })))
      .toBe('queued: job 1234, Reason: Priority, est. start 14:05');
    expect(statusText(status({ reason: '' }))).toBe('queued: job 1234');
  });
  it('then starting on the node, then the walltime left', () => {
    expect(statusText(status({ phase: 'starting', node: 'nid00042' }))).toBe('starting on nid00042 (job 1234)');
    expect(statusText(status({ phase: 'running', node: 'nid00042', time_left_seconds: 3599 })))
      .toBe('job 1234 on nid00042: 0:59:59 left');
    expect(statusText(status({ phase: 'running', node: 'nid00042' }), 61)).toBe('job 1234 on nid00042: 0:01:01 left');
  });
});

describe('findStatus and cancellable', () => {
  const queued = status({ kernel_id: 'q', path: 'a.ipynb', phase: 'queued' });
  const running = status({ kernel_id: 'r', path: 'a.ipynb', phase: 'running', node: 'nid1' });
  const other = status({ kernel_id: 'o', path: 'b.ipynb', phase: 'running' });
  it('finds a notebook\'s kernel by id, else the start still waiting for its path', () => {
    expect(findStatus([running, queued, other], 'r', 'a.ipynb')).toBe(running);
    expect(findStatus([running, queued, other], null, 'a.ipynb')).toBe(queued);
    expect(findStatus([running, other], null, 'a.ipynb')).toBe(running);
    expect(findStatus([other], 'x', 'c.ipynb')).toBeNull();
    expect(findStatus([queued], null, null)).toBeNull();
  });
  it('offers Cancel only for a submitted job that runs no kernel yet', () => {
    expect(cancellable(queued)).toBe(true);
    expect(cancellable(status({ phase: 'starting' }))).toBe(true);
    expect(cancellable(status({ phase: 'submitting', job_id: null }))).toBe(false);
    expect(cancellable(running)).toBe(false);
    expect(cancellable(status({ phase: 'ended' }))).toBe(false);
    expect(cancellable(null)).toBe(false);
  });
  it('hints a partition\'s time limit', () => {
    expect(timeHint(60)).toBe('at most 60 min');
    expect(timeHint(null)).toBe('no time limit');
  });
});

describe('dueWarnings', () => {
  it('offers saving at 10 and at 2 minutes before the end, each once', () => {
    const given = new Set<number>();
    expect(dueWarnings(900, given)).toEqual([]);
    expect(dueWarnings(600, given)).toEqual([600]);
    given.add(600);
    expect(dueWarnings(400, given)).toEqual([]);
    expect(dueWarnings(119, given)).toEqual([120]);
    given.add(120);
    expect(dueWarnings(10, given)).toEqual([]);
    expect(dueWarnings(null, new Set())).toEqual([]);
  });
  it('shows only the nearest when a tab opens late', () => {
    expect(dueWarnings(60, new Set())).toEqual([120]);
  });
});

describe('validateChoice', () => {
  const fields = (choice: object) => validateChoice(choice, options).map(e => e.field);
  it('accepts a choice within the limits', () => {
    expect(validateChoice({ partition: 'regular', time: '00:05:00', nodes: 2, gpus: 8, account: 'm1234' }, options))
      .toEqual([]);
  });
  it('enforces the partition\'s and the association\'s time limits', () => {
    expect(validateChoice({ partition: 'regular', time: '02:00:00' }, options)[0].message).toBe('at most 60 min here');
    expect(validateChoice({ partition: 'regular', account: 'm5678', time: '00:30:00' }, options)[0].message)
      .toBe('at most 20 min here');
    expect(fields({ partition: 'debug', time: '00:31:00' })).toEqual(['time']);
    expect(fields({ time: 'soon' })).toEqual(['time']);
  });
  it('enforces node, CPU and GPU counts of the partition', () => {
    expect(fields({ partition: 'debug', nodes: 5 })).toEqual(['nodes']);
    expect(fields({ partition: 'regular', nodes: 3 })).toEqual(['nodes']);
    expect(fields({ partition: 'debug', gpus: 1 })).toEqual(['gpus']);
    expect(fields({ partition: 'regular', cpus_per_task: 65 })).toEqual(['cpus_per_task']);
    expect(fields({ nodes: 1.5 })).toEqual(['nodes']);
  });
  it('refuses names the site did not offer, and leaves what may reach sbatch to the server', () => {
    expect(fields({ partition: 'nosuch' })).toEqual(['partition']);
    expect(fields({ account: 'other' })).toEqual(['account']);
    expect(fields({ account: 'm1234; rm -rf ~' })).toEqual(['account']);
    expect(fields({ time: '00:05:00; touch x' })).toEqual(['time']);
    // Free text goes to the server as typed: it alone says what sbatch may get (its message shows in the form).
    expect(fields({ constraint: 'knl$(id)' })).toEqual([]);
    expect(fields({ reservation: 'a\nb' })).toEqual([]);
  });
});

describe('remembering', () => {
  it('keeps the last choice and "don\'t ask again" per target', () => {
    const memory = new ChoiceMemory(new MemoryStorage());
    expect(memory.last('knl')).toBeNull();
    memory.remember('knl', { partition: 'regular', time: '00:05:00', nodes: '2' as any, constraint: '' });
    expect(memory.last('knl')).toEqual({ partition: 'regular', time: '00:05:00', nodes: 2 });
    expect(memory.last('gpu')).toBeNull();
    expect(memory.dontAsk('knl')).toBe(false);
    memory.setDontAsk('knl', true);
    expect(memory.dontAsk('knl')).toBe(true);
    expect(memory.dontAsk('gpu')).toBe(false);
    memory.setDontAsk('knl', false);
    expect(memory.dontAsk('knl')).toBe(false);
  });
  it('starts the form from the last choice, else the kernelspec, dropping a partition that is gone', () => {
    expect(initialChoice(options, null)).toEqual({ partition: 'debug', time: '00:10:00', nodes: 1 });
    expect(initialChoice(options, { partition: 'regular', time: '00:05:00' }))
      .toEqual({ partition: 'regular', time: '00:05:00', nodes: 1 });
    expect(initialChoice(options, { partition: 'retired' }).partition).toBe('debug');
  });
  it('sends no empty fields, and counts as numbers', () => {
    expect(cleanChoice({ partition: ' regular ', qos: '', nodes: '3' as any, gpus: undefined }))
      .toEqual({ partition: 'regular', nodes: 3 });
  });
});
