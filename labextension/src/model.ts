/**
 * What the extension knows and decides, without JupyterLab: the server's JSON shapes, which
 * requests start a kernel, the resource form's checks (the server checks again), the status
 * bar's words, when to warn before the walltime ends, and what is remembered per target.
 * Kept free of JupyterLab imports so that jest runs it as plain TypeScript.
 */

/** One partition as GET /jupyter-hpc/api/slurm/<spec>/options describes it. */
export interface IPartition {
  name: string;
  default: boolean;
  state: string;
  max_time: number | null; // minutes; null: no limit
  default_time: number | null;
  max_nodes: number | null;
  total_nodes: number;
  cpus_per_node: number;
  gpus_per_node: number;
  features: string[];
}

export interface IAssociation {
  account: string;
  partition: string;
  qos: string[];
  default_qos: string;
  max_time: number | null;
  max_nodes: number | null;
}

export interface ISiteOptions {
  kernel_name: string;
  display_name: string;
  site: string;
  user: string;
  partitions: IPartition[];
  accounts: string[];
  default_account: string;
  qos: string[];
  associations: IAssociation[];
  defaults: { [key: string]: string | number };
}

/** The resources a user picks; the names are the SlurmProvisioner's settings. */
export interface IChoice {
  partition?: string;
  account?: string;
  qos?: string;
  time?: string;
  nodes?: number;
  cpus_per_task?: number;
  gpus?: number;
  constraint?: string;
  reservation?: string;
}

export const CHOICE_FIELDS: (keyof IChoice)[] = [
  'partition', 'account', 'qos', 'time', 'nodes', 'cpus_per_task', 'gpus', 'constraint', 'reservation'
];

/** One SLURM kernel as GET /jupyter-hpc/api/slurm/kernels reports it. */
export interface IKernelStatus {
  kernel_id: string;
  kernel_name: string;
  path: string;
  phase: 'submitting' | 'queued' | 'starting' | 'running' | 'ended' | 'failed';
  job_id: string | null;
  state: string | null;
  reason: string;
  partition: string;
  node: string;
  est_start: string;
  time_limit: string;
  time_left_seconds: number | null;
  /** Why the start failed (phase 'failed'). */
  error?: string;
  /** The target's idle_timeout (seconds), how long the kernel has been idle, and, once the
   * warning is due, the seconds until it ends (else null). */
  idle_timeout?: number | null;
  idle_seconds?: number | null;
  idle_ends_in_seconds?: number | null;
}

/** A kernelspec model's metadata names our SLURM provisioner. */
export function isSlurmSpec(spec: { metadata?: { [key: string]: any } } | undefined | null): boolean {
  const provisioner = spec?.metadata?.kernel_provisioner;
  return !!provisioner && provisioner.provisioner_name === 'hpc-slurm';
}

/** A request that starts a new kernel: which kernelspec, for which session path. */
export interface IKernelStart {
  kernelName: string;
  path: string | null; // null: not in the request (a session's PATCH); look the session up
  sessionId: string | null;
}

/**
 * The file a new session is for, as jupyter_server names it to the kernel (JPY_SESSION_NAME):
 * JupyterLab 4 posts a placeholder path (``dir/<uuid>``, renamed once the kernel is up) and
 * the document's file name as ``name``; the server joins the path's folder and the name.
 */
function sessionFile(model: any): string {
  const path = typeof model.path === 'string' ? model.path : '';
  const name = typeof model.name === 'string' ? model.name : '';
  if (!name || name.includes('/')) {
    return path;
  }
  const slash = path.lastIndexOf('/');
  return slash >= 0 ? `${path.slice(0, slash)}/${name}` : name;
}

/**
 * Whether ``method url`` with ``body`` starts a kernel: POST /api/sessions (launcher tile,
 * opening a notebook), PATCH /api/sessions/<id> naming a kernel (the kernel picker), POST
 * /api/kernels. A restart (POST /api/kernels/<id>/restart) is not a start.
 */
export function kernelStartOf(method: string, url: string, body: string | null): IKernelStart | null {
  const { pathname } = new URL(url, 'http://localhost');
  const verb = method.toUpperCase();
  let model: any = null;
  try {
    model = body ? JSON.parse(body) : null;
  } catch {
    return null;
  }
  if (!model || typeof model !== 'object') {
    return null;
  }
  if (verb === 'POST' && /\/api\/sessions\/?$/.test(pathname)) {
    const name = model.kernel?.name;
    if (typeof name !== 'string' || model.kernel?.id) {
      return null; // no kernel, or an existing kernel joined
    }
    return { kernelName: name, path: sessionFile(model), sessionId: null };
  }
  const patch = /\/api\/sessions\/([^/]+)\/?$/.exec(pathname);
  if (verb === 'PATCH' && patch) {
    const name = model.kernel?.name;
    if (typeof name !== 'string' || model.kernel?.id) {
      return null;
    }
    return {
      kernelName: name,
      path: typeof model.path === 'string' ? model.path : null,
      sessionId: decodeURIComponent(patch[1])
    };
  }
  if (verb === 'POST' && /\/api\/kernels\/?$/.test(pathname) && typeof model.name === 'string') {
    return { kernelName: model.name, path: typeof model.path === 'string' ? model.path : '', sessionId: null };
  }
  return null;
}

const TIME = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/;

/** SLURM's time syntax as seconds (a bare number is minutes, as for sbatch --time); null if not one. */
export function slurmSeconds(text: string): number | null {
  const match = TIME.exec(text.trim());
  if (!match) {
    return null;
  }
  const [, days, a, b, c] = match;
  const n = (s: string | undefined) => (s === undefined ? 0 : parseInt(s, 10));
  if (days !== undefined) {
    return n(days) * 86400 + n(a) * 3600 + n(b) * 60 + n(c);
  }
  if (c !== undefined) {
    return n(a) * 3600 + n(b) * 60 + n(c);
  }
  if (b !== undefined) {
    return n(a) * 60 + n(b);
  }
  return n(a) * 60;
}

/** Seconds as H:MM:SS (or D-HH:MM:SS), SLURM's own way of writing a walltime. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  const pad = (v: number) => String(v).padStart(2, '0');
  const hms = `${days ? pad(hours) : hours}:${pad(minutes)}:${pad(rest)}`;
  return days ? `${days}-${hms}` : hms;
}

/** Minutes as the form shows a limit: "60 min", "2 h", "1 d 4 h", or "no limit". */
export function formatLimit(minutes: number | null): string {
  if (minutes === null || minutes === undefined) {
    return 'no limit';
  }
  if (minutes < 120) {
    return `${minutes} min`;
  }
  const days = Math.floor(minutes / 1440);
  const hours = Math.round((minutes % 1440) / 60);
  return days ? `${days} d${hours ? ` ${hours} h` : ''}` : `${hours} h`;
}

/** squeue's expected start (ISO-like local time of the cluster) as HH:MM, or the date too if not today. */
export function formatStart(text: string, now: Date = new Date()): string {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(text);
  if (!match) {
    return text;
  }
  const [, y, mo, d, h, mi] = match;
  const sameDay = now.getFullYear() === +y && now.getMonth() + 1 === +mo && now.getDate() === +d;
  return sameDay ? `${h}:${mi}` : `${y}-${mo}-${d} ${h}:${mi}`;
}

/** The status bar's words for a kernel's job. */
export function statusText(status: IKernelStatus, timeLeft: number | null = status.time_left_seconds): string {
  const job = status.job_id ? `job ${status.job_id}` : 'job';
  switch (status.phase) {
    case 'submitting':
      return 'submitting to SLURM…';
    case 'queued': {
      const parts = [`queued: ${job}`];
      if (status.reason) {
        parts.push(`Reason: ${status.reason}`);
      }
      if (status.est_start) {
        parts.push(`est. start ${formatStart(status.est_start)}`);
      }
      return parts.join(', ');
    }
    case 'starting':
      return `starting on ${status.node || 'its node'} (${job})`;
    case 'running':
      return timeLeft !== null && timeLeft !== undefined
        ? `${job} on ${status.node}: ${formatDuration(timeLeft)} left`
        : `${job} on ${status.node}`;
    case 'failed':
      return `${job} did not start`;
    default:
      return `${job} ended`;
  }
}

/**
 * The status of one notebook's kernel: by kernel id, else by session path (a start still in
 * the queue has no kernel id on the page yet: the session's POST has not answered).
 */
export function findStatus(statuses: IKernelStatus[], kernelId: string | null, path: string | null): IKernelStatus | null {
  return statuses.find(s => kernelId && s.kernel_id === kernelId) ??
    statuses.find(s => path && s.path === path && s.phase !== 'running') ??
    statuses.find(s => path && s.path === path) ?? null;
}

/** Whether the page offers to cancel this start: its job is submitted and not running a kernel yet. */
export function cancellable(status: IKernelStatus | null): boolean {
  return !!status && !!status.job_id && (status.phase === 'queued' || status.phase === 'starting');
}

/** The form's hint for a partition's time limit. */
export function timeHint(maxMinutes: number | null): string {
  return maxMinutes === null || maxMinutes === undefined ? 'no time limit' : `at most ${formatLimit(maxMinutes)}`;
}

/** Thresholds (seconds before the end) at which to offer saving the notebook. */
export const SAVE_WARNINGS = [600, 120];

/** The warnings due now: those reached by ``timeLeft`` and not given yet. */
export function dueWarnings(timeLeft: number | null, given: Set<number>): number[] {
  if (timeLeft === null) {
    return [];
  }
  const due = SAVE_WARNINGS.filter(t => timeLeft <= t && !given.has(t));
  // Past several at once (a tab opened late): only the nearest one is worth showing.
  return due.length ? [Math.min(...due)] : [];
}

/** One problem of the form: which field, and what to do. */
export interface IFieldError {
  field: keyof IChoice;
  message: string;
}

/**
 * The partitions' and associations' limits, as the server enforces them, checked as the user
 * types. What may reach sbatch (the characters of a constraint or a reservation name, any value
 * at all) is the server's decision alone: it checks every value again and its refusal shows in
 * the form.
 */
export function validateChoice(choice: IChoice, options: ISiteOptions): IFieldError[] {
  const errors: IFieldError[] = [];
  const partition =
    options.partitions.find(p => p.name === choice.partition) ??
    options.partitions.find(p => p.default) ??
    options.partitions[0];
  if (choice.partition && !options.partitions.some(p => p.name === choice.partition)) {
    errors.push({ field: 'partition', message: `choose one of ${options.partitions.map(p => p.name).join(', ')}` });
  }
  if (choice.account && options.accounts.length && !options.accounts.includes(choice.account)) {
    errors.push({ field: 'account', message: `choose one of ${options.accounts.join(', ')}` });
  }
  if (choice.time) {
    const seconds = slurmSeconds(choice.time);
    const account = choice.account || options.default_account;
    const limits = [
      partition?.max_time ?? null,
      ...options.associations
        .filter(a => a.account === account && (a.partition === '' || a.partition === partition?.name))
        .map(a => a.max_time)
    ].filter((m): m is number => !!m);
    if (seconds === null || seconds <= 0) {
      errors.push({ field: 'time', message: 'a walltime such as 00:30:00 or 1-00:00:00' });
    } else if (limits.length && seconds > Math.min(...limits) * 60) {
      errors.push({ field: 'time', message: `at most ${formatLimit(Math.min(...limits))} here` });
    }
  }
  const maxNodes = [partition?.max_nodes, partition?.total_nodes].filter((n): n is number => !!n);
  const bounded = (field: keyof IChoice, low: number, high: number | null) => {
    const value = choice[field];
    if (value === undefined || value === null || (value as unknown) === '') {
      return;
    }
    const n = Number(value);
    if (!Number.isInteger(n) || n < low || (high !== null && n > high)) {
      errors.push({
        field,
        message: high !== null ? `a whole number from ${low} to ${high}` : `a whole number, at least ${low}`
      });
    }
  };
  bounded('nodes', 1, maxNodes.length ? Math.min(...maxNodes) : null);
  bounded('cpus_per_task', 0, partition?.cpus_per_node || null);
  bounded('gpus', 0, partition ? partition.gpus_per_node * (Number(choice.nodes) || 1) : null);
  return errors;
}

/** The choice without empty fields, numbers as numbers: what PUT /pending sends. */
export function cleanChoice(choice: IChoice): IChoice {
  const out: any = {};
  for (const field of CHOICE_FIELDS) {
    const value = (choice as any)[field];
    if (value === undefined || value === null || value === '') {
      continue;
    }
    out[field] = ['nodes', 'cpus_per_task', 'gpus'].includes(field) ? Number(value) : String(value).trim();
  }
  return out;
}

/** A Storage (localStorage in the browser) holding, per target, the last choice and "don't ask". */
export interface IStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

const PREFIX = 'jupyter-hpc:slurm:';

export class ChoiceMemory {
  constructor(private storage: IStorage) {}

  last(kernelName: string): IChoice | null {
    try {
      const text = this.storage.getItem(PREFIX + 'last:' + kernelName);
      return text ? (JSON.parse(text) as IChoice) : null;
    } catch {
      return null;
    }
  }

  remember(kernelName: string, choice: IChoice): void {
    this.storage.setItem(PREFIX + 'last:' + kernelName, JSON.stringify(cleanChoice(choice)));
  }

  dontAsk(kernelName: string): boolean {
    return this.storage.getItem(PREFIX + 'dontask:' + kernelName) === '1';
  }

  setDontAsk(kernelName: string, value: boolean): void {
    if (value) {
      this.storage.setItem(PREFIX + 'dontask:' + kernelName, '1');
    } else {
      this.storage.removeItem(PREFIX + 'dontask:' + kernelName);
    }
  }
}

/** The form's starting values: the last choice for this target, else the kernelspec's own settings. */
export function initialChoice(options: ISiteOptions, last: IChoice | null): IChoice {
  const base: IChoice = {};
  for (const field of CHOICE_FIELDS) {
    const value = options.defaults?.[field];
    if (value !== undefined && value !== '' && value !== 0) {
      (base as any)[field] = value;
    }
  }
  const merged = { ...base, ...(last ?? {}) };
  if (merged.partition && !options.partitions.some(p => p.name === merged.partition)) {
    delete merged.partition; // a partition gone since, or no longer the user's
  }
  if (!merged.partition) {
    merged.partition = (options.partitions.find(p => p.default) ?? options.partitions[0])?.name;
  }
  return merged;
}
