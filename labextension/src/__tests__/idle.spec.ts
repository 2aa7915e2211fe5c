import { formatMinutes, idleChanges, idleText } from '../idle_model';
import { IKernelStatus } from '../model';

function status(over: Partial<IKernelStatus>): IKernelStatus {
  return {
    kernel_id: 'k1', kernel_name: 'cori-knl', path: 'work/run.ipynb', phase: 'running', job_id: '1234',
    state: 'RUNNING', reason: '', partition: 'regular', node: 'nid001', est_start: '', time_limit: '2:00:00',
    time_left_seconds: 3000, idle_timeout: 3600, idle_seconds: 3300, idle_ends_in_seconds: 300, ...over
  };
}

describe('idle warning', () => {
  it('names the idle time, the kernel and its job, and when they end', () => {
    expect(idleText(status({}))).toBe(
      'Idle for 55 min (work/run.ipynb): this kernel and job 1234 end in 5 min to give the nodes back — keep it?');
    expect(formatMinutes(12)).toBe('0:00:12');
  });

  it('warns once per idle period and withdraws the warning when the kernel is used again', () => {
    const due = [status({})];
    expect(idleChanges(due, new Set()).warn.map(s => s.kernel_id)).toEqual(['k1']);
    expect(idleChanges(due, new Set(['k1']))).toEqual({ warn: [], withdraw: [] });
    const used = [status({ idle_seconds: 4, idle_ends_in_seconds: null })];
    expect(idleChanges(used, new Set(['k1']))).toEqual({ warn: [], withdraw: ['k1'] });
    expect(idleChanges([status({ phase: 'queued' })], new Set()).warn).toEqual([]);
  });
});
