"""``%%sbatch``, ``%squeue``, ``%sacct``, ``%sinfo``, ``%scancel`` and ``%slurm``.

Each magic parses its own options (``--site``, ``--mode``, and for ``%%sbatch`` the waiting
options) and hands every other word, split with shlex, to the SLURM command as argv.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CaselessStrEnum, Float, Int, Unicode, validate

from .dialect import DIALECTS, JobStatus, Query, has_format_option
from ..errors import SlurmError
from .runner import LocalRunner, check, site_from_kernelspec


def exact_options(func):
    """No abbreviations: ``--w`` must not become ``--wait`` nor ``--m`` ``--mode``, since every
    option we do not know belongs to SLURM."""
    func.parser.allow_abbrev = False
    return func


def common_args(func):
    """The options every magic takes: where to run, and what to return."""
    func = argument(
        "--mode", choices=("pandas", "raw"),
        help="pandas: return a typed DataFrame; raw: print SLURM's own text. "
        "Default: %%slurm mode (initially pandas).",
    )(func)
    func = argument(
        "--site", metavar="NAME",
        help="Run on this site over SSH instead of here. For now a site is the name of an hpc-ssh "
        "kernelspec (its provisioner config gives host, user, keys, known_hosts). Default: "
        "%%slurm site, else this machine.",
    )(func)
    return func


@dataclasses.dataclass
class JobOutcome:
    """What ``%%sbatch --wait`` returns once the job has ended."""

    job_id: int
    state: str
    exit_code: int | None
    signal: int | None
    stdout_path: str
    tail: str

    def __int__(self) -> int:
        return self.job_id


@magics_class
class SlurmMagics(Magics):
    """SLURM from a notebook cell: submit, watch, cancel, and account, as DataFrames."""

    mode = CaselessStrEnum(
        ("pandas", "raw"), default_value="pandas", config=True,
        help="What %squeue, %sacct and %sinfo return by default: 'pandas' (a typed DataFrame) or "
        "'raw' (SLURM's text, printed). Per call: --mode; per session: %slurm mode raw.",
    )
    site = Unicode(
        None, allow_none=True, config=True,
        help="Default site for every magic, e.g. 'perlmutter' (an hpc-ssh kernelspec name). "
        "None: run SLURM's commands on this machine, as in a kernel on the cluster.",
    )
    dialect = CaselessStrEnum(
        tuple(DIALECTS), default_value="json", config=True,
        help="How to read SLURM's output: 'json' uses --json where it is complete (sinfo) and "
        "falls back to delimited text when the site's SLURM lacks it; 'delimited' never asks for JSON.",
    )
    poll_interval = Float(
        2.0, config=True,
        help="Seconds between checks of a job's state while %%sbatch --wait waits, e.g. 2.0.",
    )
    tail_lines = Int(
        10, config=True,
        help="Lines of the job's output file %%sbatch --wait shows when the job ends (0: none).",
    )
    cancel_on_interrupt = Bool(
        False, config=True,
        help="When Ctrl-C interrupts %%sbatch --wait: True cancels the job (scancel); False leaves it "
        "queued or running and says its id. Per call: --cancel-on-interrupt.",
    )
    shebang = Unicode(
        "#!/bin/bash", config=True,
        help="First line added to a %%sbatch cell that has no '#!' line (sbatch requires one).",
    )
    command_timeout = Float(
        120.0, config=True, help="Seconds any one SLURM command may take before it is abandoned.",
    )

    @validate("poll_interval")
    def _check_poll_interval(self, proposal):
        if proposal["value"] <= 0:
            raise ValueError("poll_interval must be positive (seconds), e.g. 2.0")
        return proposal["value"]

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self._runners: dict[str | None, object] = {None: LocalRunner()}

    # -- plumbing -------------------------------------------------------------------------
    def _split(self, magic, line: str):
        try:
            words = shlex.split(line)
        except ValueError as error:
            raise UsageError(f"Cannot split the arguments: {error}") from None
        return magic.parser.parse_known_args(words)

    def _runner(self, site: str | None):
        site = site or self.site or None
        if site not in self._runners:
            self._runners[site] = site_from_kernelspec(site)
        return self._runners[site]

    def _run(self, runner, query: Query, *, show_warnings: bool = True) -> str:
        done = runner.run(query.argv, input=query.input, env=query.env, timeout=self.command_timeout)
        if done.returncode != 0 and query.fallback is not None and "unrecognized option" in done.stderr:
            return self._run(runner, query.fallback, show_warnings=show_warnings)
        check(done, runner.where)
        if show_warnings and done.stderr.strip():
            sys.stderr.write(done.stderr if done.stderr.endswith("\n") else done.stderr + "\n")
        return query.parse(done.stdout) if query.parse else done.stdout

    def _table(self, args, rest, command: str):
        runner = self._runner(args.site)
        if (args.mode or self.mode) == "raw":
            done = check(runner.run([command, *rest], timeout=self.command_timeout), runner.where)
            if done.stderr.strip():
                sys.stderr.write(done.stderr)
            sys.stdout.write(done.stdout)
            return None
        if has_format_option(rest):
            raise UsageError(f"In pandas mode %{command} chooses the columns itself; for your own "
                             f"format use --mode raw.")
        dialect = DIALECTS[self.dialect]()
        return self._run(runner, getattr(dialect, command)(rest))

    # -- magics ---------------------------------------------------------------------------
    @exact_options
    @magic_arguments()
    @common_args
    @line_magic
    def squeue(self, line=""):
        """The queue as a DataFrame, one row per job (array tasks expanded).

        Any other option goes to squeue, e.g. ``%squeue --me -t PENDING`` or ``%squeue -j 12,13``.
        Columns: JOBID, ARRAY_JOB_ID, ARRAY_TASK_ID, NAME, USER, ACCOUNT, PARTITION, STATE
        (categorical), REASON, TIME and TIME_LIMIT (timedelta), SUBMIT_TIME, START_TIME,
        END_TIME (UTC timestamps; START/END are SLURM's estimates while pending), NODES, CPUS,
        PRIORITY, NODELIST.
        """
        args, rest = self._split(self.squeue, line)
        return self._table(args, rest, "squeue")

    @exact_options
    @magic_arguments()
    @common_args
    @line_magic
    def sacct(self, line=""):
        """Accounting records as a DataFrame (needs the site's slurmdbd).

        Any other option goes to sacct, e.g. ``%sacct -j 12`` or ``%sacct -S now-1days``.
        JobID is the integer job id and Step the step name ("batch", "0", …, or missing);
        State is categorical ("CANCELLED by 1001" gives State CANCELLED and CancelledBy 1001);
        ExitCode and Signal are integers; Elapsed and Timelimit timedeltas; Submit, Start, End
        UTC timestamps.
        """
        args, rest = self._split(self.sacct, line)
        return self._table(args, rest, "sacct")

    @exact_options
    @magic_arguments()
    @common_args
    @line_magic
    def sinfo(self, line=""):
        """Nodes as a DataFrame, one row per (partition, node).

        Any other option goes to sinfo, e.g. ``%sinfo -p debug``. Columns: PARTITION, NODE,
        STATE (categorical, lower case), STATE_FLAGS, CPUS, CPUS_ALLOC, CPUS_IDLE, MEMORY and
        FREE_MEMORY (MB), CPU_LOAD, REASON.
        """
        args, rest = self._split(self.sinfo, line)
        return self._table(args, rest, "sinfo")

    @exact_options
    @magic_arguments()
    @common_args
    @line_magic
    def scancel(self, line=""):
        """Cancel jobs: by ids (``%scancel 12 13``), by name (``%scancel --name "my run"``) or
        all of a user's (``%scancel --user alice``); other scancel options pass through."""
        args, rest = self._split(self.scancel, line)
        selectors = ("-n", "--name", "-u", "--user", "--me", "-p", "--partition", "-t", "--state",
                     "-A", "--account", "-w", "--nodelist", "-q", "--qos", "--reservation", "-M", "--clusters")
        if not any(word.split("=", 1)[0] in selectors or word[:1].isdigit() for word in rest):
            raise UsageError("%scancel needs job ids, --name NAME or --user USER (or another scancel filter).")
        runner = self._runner(args.site)
        self._run(runner, DIALECTS[self.dialect]().scancel(rest))

    @exact_options
    @magic_arguments()
    @common_args
    @argument("--wait", action="store_true",
              help="Wait until the job ends, with a progress line (state, reason, elapsed); then show "
              "its state, exit code and the end of its output file. (sbatch's own -W still passes through.)")
    @argument("--cancel-on-interrupt", action="store_true", default=None,
              help="If Ctrl-C interrupts --wait, cancel the job (default: %%slurm's cancel_on_interrupt, "
              "initially off: the job keeps running and its id is shown).")
    @argument("--tail", type=int, metavar="N", help="Lines of output to show after --wait (default 10).")
    @cell_magic
    def sbatch(self, line, cell):
        """Submit the cell as a batch script; return the job id (an int).

        Every other option goes to sbatch, e.g. ``%%sbatch -J "my run" -t 10 -p debug``; so do
        ``#SBATCH`` lines in the cell. A cell without a '#!' line gets ``#!/bin/bash``.
        With --wait, return a JobOutcome (job_id, state, exit_code, signal, stdout_path, tail).
        """
        args, rest = self._split(self.sbatch, line)
        if args.mode == "raw":
            pass  # nothing to tabulate: sbatch returns an id in either mode
        if not cell.strip():
            raise UsageError("%%sbatch needs a batch script in the cell.")
        script = cell if cell.lstrip().startswith("#!") else f"{self.shebang}\n{cell}"
        if not script.endswith("\n"):
            script += "\n"
        runner = self._runner(args.site)
        dialect = DIALECTS[self.dialect]()
        job_id = self._run(runner, dialect.sbatch(rest, script))
        where = f" on {runner.where}" if runner.where else ""
        print(f"Submitted batch job {job_id}{where}")
        if not args.wait:
            return job_id
        cancel = self.cancel_on_interrupt if args.cancel_on_interrupt is None else args.cancel_on_interrupt
        tail = self.tail_lines if args.tail is None else args.tail
        return self._wait(runner, dialect, job_id, cancel=cancel, tail=tail)

    @exact_options
    @magic_arguments()
    @argument("setting", choices=("mode", "site", "show"), nargs="?", default="show")
    @argument("value", nargs="?", help="pandas|raw for mode; a site name, or 'local', for site.")
    @line_magic
    def slurm(self, line=""):
        """Defaults for this session: ``%slurm mode raw``, ``%slurm site perlmutter``,
        ``%slurm site local``; ``%slurm`` alone shows them."""
        try:
            args = self.slurm.parser.parse_args(shlex.split(line))
        except ValueError as error:
            raise UsageError(str(error)) from None
        if args.setting == "show":
            print(f"mode: {self.mode}\nsite: {self.site or 'local (this machine)'}\ndialect: {self.dialect}")
        elif args.value is None:
            raise UsageError(f"%slurm {args.setting} needs a value.")
        elif args.setting == "mode":
            if args.value not in ("pandas", "raw"):
                raise UsageError("%slurm mode takes pandas or raw.")
            self.mode = args.value
        else:
            site = None if args.value == "local" else args.value
            if site is not None:
                self._runner(site)  # fail now, not at the next magic, if the site is unknown
            self.site = site

    # -- waiting --------------------------------------------------------------------------
    def _wait(self, runner, dialect, job_id: int, *, cancel: bool, tail: int) -> JobOutcome:
        start = time.monotonic()
        status: JobStatus | None = None
        try:
            while True:
                try:
                    status = self._run(runner, dialect.job_status(job_id), show_warnings=False)
                except SlurmError as error:
                    if "Invalid job id" in error.stderr and status is not None:
                        break  # purged after MinJobAge: keep the last state seen
                    raise
                elapsed = time.monotonic() - start
                reason = f" ({status.reason})" if status.reason and status.reason != "None" else ""
                sys.stdout.write(f"\rjob {job_id}: {status.state}{reason}, run time {status.run_time}, "
                                 f"waited {elapsed:.0f} s   ")
                sys.stdout.flush()
                if status.finished:
                    break
                time.sleep(self.poll_interval)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            if cancel:
                self._run(runner, dialect.scancel([str(job_id)]))
                print(f"Interrupted: cancelled job {job_id}.")
            else:
                print(f"Interrupted: job {job_id} is still queued or running. "
                      f"Cancel it with %scancel {job_id}, or watch it with %squeue -j {job_id}.")
            raise
        sys.stdout.write("\n")
        output = ""
        if tail > 0 and status.stdout_path:
            done = runner.run(["tail", "-n", str(tail), "--", status.stdout_path], timeout=self.command_timeout)
            output = done.stdout if done.returncode == 0 else ""
        code = "unknown" if status.exit_code is None else status.exit_code
        signal = f", signal {status.signal}" if status.signal else ""
        print(f"job {job_id}: {status.state}, exit code {code}{signal}")
        if output:
            print(f"--- last {tail} lines of {status.stdout_path}\n{output}", end="" if output.endswith("\n") else "\n")
        return JobOutcome(job_id, status.state, status.exit_code, status.signal, status.stdout_path, output)
