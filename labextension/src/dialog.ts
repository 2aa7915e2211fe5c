/**
 * The resource dialog shown when a SLURM kernel starts: JupyterLab's own Dialog with a plain
 * form (labels tied to inputs, limits as hints, problems announced), filled from the site's
 * live options and the last choice for this target.
 */
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import {
  ChoiceMemory,
  IChoice,
  ISiteOptions,
  cleanChoice,
  initialChoice,
  timeHint,
  validateChoice
} from './model';

export interface IDialogResult {
  choice: IChoice;
  dontAsk: boolean;
}

let formCount = 0;

/** The dialog's body: Dialog calls getValue() when the user presses Start. */
export class ResourceForm extends Widget {
  constructor(readonly options: ISiteOptions, initial: IChoice, private refusal = '') {
    super();
    this.addClass('jp-hpc-ResourceForm');
    this.prefix = `jp-hpc-form-${++formCount}-`;
    this.form = document.createElement('form');
    this.form.setAttribute('aria-label', `SLURM resources for ${options.display_name}`);
    this.form.addEventListener('submit', event => event.preventDefault());
    this.node.appendChild(this.form);

    const site = document.createElement('p');
    site.className = 'jp-hpc-ResourceForm-site';
    site.textContent = `${options.display_name} — ${options.site} as ${options.user}`;
    this.form.appendChild(site);

    this.select('partition', 'Partition', options.partitions.map(p => [p.name, `${p.name}${p.default ? ' (default)' : ''}${p.state !== 'UP' ? ` — ${p.state}` : ''}`]));
    this.select('account', 'Account', [['', options.default_account ? `default (${options.default_account})` : 'default'],
      ...options.accounts.map(a => [a, a] as [string, string])]);
    this.select('qos', 'QOS', [['', 'default'], ...options.qos.map(q => [q, q] as [string, string])]);
    this.input('time', 'Time', 'text', 'HH:MM:SS');
    this.input('nodes', 'Nodes', 'number', '1');
    this.input('cpus_per_task', 'CPUs per task', 'number', 'site default');
    this.input('gpus', 'GPUs', 'number', '0');
    this.input('constraint', 'Constraint', 'text', 'e.g. knl&quad');
    this.input('reservation', 'Reservation', 'text', 'none');

    const dontAsk = document.createElement('label');
    dontAsk.className = 'jp-hpc-ResourceForm-dontask';
    this.dontAskBox = document.createElement('input');
    this.dontAskBox.type = 'checkbox';
    this.dontAskBox.name = 'dont-ask';
    dontAsk.append(this.dontAskBox, " Don't ask again for this kernel (use this choice)");
    this.form.appendChild(dontAsk);

    this.errorBox = document.createElement('div');
    this.errorBox.className = 'jp-hpc-ResourceForm-errors';
    this.errorBox.setAttribute('role', 'alert');
    this.form.appendChild(this.errorBox);

    for (const [field, value] of Object.entries(initial)) {
      const control = this.controls.get(field as keyof IChoice);
      if (control && value !== undefined && value !== null) {
        control.value = String(value);
      }
    }
    // Checked at once on every edit, so that Start is never a step behind what is shown.
    const edited = () => {
      this.refusal = '';
      this.check();
    };
    this.form.addEventListener('input', edited);
    this.form.addEventListener('change', edited);
    this.refresh();
  }

  /** The choice as it stands (Dialog's getValue). */
  getValue(): IDialogResult {
    const raw: any = {};
    for (const [field, control] of this.controls) {
      raw[field] = control.value;
    }
    return { choice: cleanChoice(raw), dontAsk: this.dontAskBox.checked };
  }

  /** Problems with the current values (empty when Start may go ahead). */
  problems(): string[] {
    return validateChoice(this.getValue().choice, this.options).map(e => `${e.field}: ${e.message}`);
  }

  /**
   * Check the form now, then have the Dialog check it again: the Dialog reads its inputs on
   * each 'input' event before this form does, and ignores Start while it last saw an error
   * (jp-mod-error), so without a second look a fixed value would leave Start dead.
   */
  check(): void {
    this.refresh();
    this.node.dispatchEvent(new Event('input')); // reaches the Dialog's listener, not this form's
  }

  protected onUpdateRequest(): void {
    this.refresh();
  }

  /** Hints and limits for the chosen partition, problems shown, Start enabled or not. */
  refresh(): void {
    const { choice } = this.getValue();
    const partition = this.options.partitions.find(p => p.name === choice.partition);
    const hint = (field: keyof IChoice, text: string) => {
      const node = this.node.querySelector(`#${this.prefix}${field}-hint`);
      if (node) {
        node.textContent = text;
      }
    };
    if (partition) {
      hint('partition', `${partition.total_nodes} node(s), ${partition.cpus_per_node} CPUs${partition.gpus_per_node ? `, ${partition.gpus_per_node} GPUs` : ''} each`);
      hint('time', timeHint(partition.max_time));
      const nodes = partition.max_nodes ? Math.min(partition.max_nodes, partition.total_nodes) : partition.total_nodes;
      hint('nodes', `1 to ${nodes}`);
      hint('cpus_per_task', partition.cpus_per_node ? `up to ${partition.cpus_per_node}` : '');
      hint('gpus', partition.gpus_per_node ? `up to ${partition.gpus_per_node} per node` : 'none here');
      hint('constraint', partition.features.length ? `features: ${partition.features.join(', ')}` : '');
      const nodesInput = this.controls.get('nodes') as HTMLInputElement;
      nodesInput.max = String(nodes);
      (this.controls.get('gpus') as HTMLInputElement).max = String(partition.gpus_per_node * (Number(choice.nodes) || 1));
      if (partition.cpus_per_node) {
        (this.controls.get('cpus_per_task') as HTMLInputElement).max = String(partition.cpus_per_node);
      }
    }
    const errors = validateChoice(choice, this.options);
    for (const [field, control] of this.controls) {
      const error = errors.find(e => e.field === field);
      control.setAttribute('aria-invalid', error ? 'true' : 'false');
      control.classList.toggle('jp-mod-error', !!error);
    }
    // The server's refusal of the last Start stays until the user edits the form.
    this.errorBox.textContent = errors.length ? errors.map(e => `${e.field}: ${e.message}`).join('; ') : this.refusal;
    const start = this.node.closest('.jp-Dialog-content')?.querySelector('.jp-mod-accept') as HTMLButtonElement | null;
    if (start) {
      start.disabled = errors.length > 0;
    }
  }

  protected onAfterAttach(): void {
    // JupyterLab's dialogs stop at 500 px and scroll: room for the whole form instead.
    this.node.closest('.jp-Dialog-content')?.classList.add('jp-hpc-ResourceDialog');
    this.check();
    (this.controls.get('partition') as HTMLElement | undefined)?.focus();
  }

  private row(field: keyof IChoice, label: string, control: HTMLInputElement | HTMLSelectElement): void {
    const row = document.createElement('div');
    row.className = 'jp-hpc-ResourceForm-row';
    const labelNode = document.createElement('label');
    labelNode.htmlFor = control.id = `${this.prefix}${field}`;
    labelNode.textContent = label;
    const hint = document.createElement('span');
    hint.className = 'jp-hpc-ResourceForm-hint';
    hint.id = `${this.prefix}${field}-hint`;
    control.setAttribute('aria-describedby', hint.id);
    control.name = field;
    row.append(labelNode, control, hint);
    this.form.appendChild(row);
    this.controls.set(field, control);
  }

  private select(field: keyof IChoice, label: string, choices: [string, string][]): void {
    const select = document.createElement('select');
    select.className = 'jp-mod-styled';
    for (const [value, text] of choices) {
      const option = document.createElement('option');
      option.value = value;
      option.textContent = text;
      select.appendChild(option);
    }
    this.row(field, label, select);
  }

  private input(field: keyof IChoice, label: string, type: string, placeholder: string): void {
    const input = document.createElement('input');
    input.type = type;
    input.className = 'jp-mod-styled';
    input.placeholder = placeholder;
    if (type === 'number') {
      input.min = field === 'nodes' ? '1' : '0';
      input.step = '1';
    }
    this.row(field, label, input);
  }

  private prefix: string;
  private form: HTMLFormElement;
  private controls = new Map<keyof IChoice, HTMLInputElement | HTMLSelectElement>();
  private dontAskBox: HTMLInputElement;
  private errorBox: HTMLDivElement;
}

/**
 * Ask for the resources of one start; null if the user cancels. Start stays disabled while
 * the form breaks a limit; the server checks again whatever the form said, and when it refuses
 * the form comes back with the refused values and the server's message.
 */
export async function askResources(options: ISiteOptions, memory: ChoiceMemory,
                                   refused?: { choice: IChoice; message: string }): Promise<IDialogResult | null> {
  const initial = initialChoice(options, refused ? refused.choice : memory.last(options.kernel_name));
  const form = new ResourceForm(options, initial, refused ? `Refused by the server: ${refused.message}` : '');
  const result = await showDialog<IDialogResult>({
    title: `Start ${options.display_name} on SLURM`,
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Start', ariaLabel: 'Start the kernel with these resources' })],
    focusNodeSelector: 'select',
    hasClose: true
  });
  if (!result.button.accept || !result.value) {
    return null;
  }
  return result.value;
}
