"""The argv of every SLURM command jupyter_hpc runs, and the checks on values that go into them.

Each builder returns a list, one argument per element: never shell text. Where a remote shell
must see it, the SSH layer quotes it once (``shlex.join``). A value that could break out of its
one argument or its one ``#SBATCH`` line is refused before any command is built.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence

#: The field separator asked of squeue/sinfo/sacct: ASCII's unit separator, which no job name or
#: reason holds in practice (``|`` they may).
SEP = "\x1f"
#: squeue/sacct/sinfo print timestamps as epoch seconds (UTC whatever the cluster's zone).
EPOCH_ENV = {"SLURM_TIME_FORMAT": "%s"}

#: The provisioner's queue poll: (name, squeue -o field), in JobState's order.
WATCH_FIELDS = (("job_id", "%i"), ("state", "%T"), ("reason", "%r"), ("nodes", "%B"),
                ("partition", "%P"), ("start", "%S"), ("time_left", "%L"), ("time_limit", "%l"))

#: The magics' and the sidebar's squeue: (column, squeue -o field); one row per job (``--array``).
SQUEUE_FIELDS = (
    ("JOBID", "%A"), ("ARRAY_JOB_ID", "%F"), ("ARRAY_TASK_ID", "%K"), ("NAME", "%j"), ("USER", "%u"),
    ("ACCOUNT", "%a"), ("PARTITION", "%P"), ("STATE", "%T"), ("REASON", "%r"), ("TIME", "%M"),
    ("TIME_LIMIT", "%l"), ("SUBMIT_TIME", "%V"), ("START_TIME", "%S"), ("END_TIME", "%e"),
    ("NODES", "%D"), ("CPUS", "%C"), ("PRIORITY", "%Q"), ("NODELIST", "%N"),
)
#: sacct's fields as sacct spells them.
SACCT_FIELDS = (
    "JobIDRaw", "JobName", "User", "Account", "Partition", "State", "ExitCode", "Submit",
    "Start", "End", "Elapsed", "Timelimit", "NNodes", "NCPUS", "NodeList", "Reason", "WorkDir",
)
#: sinfo -N -o: partition, node, state, CPUs, A/I/O/T CPUs, memory, free memory, load, reason.
SINFO_FORMAT = ("%P", "%N", "%T", "%c", "%C", "%m", "%e", "%O", "%E")


def checked_value(name: str, value: object) -> str:
    """A scheduler setting as text, refused if it could break out of its one argument/line."""
    text = str(value)
    if not text or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text):
        raise ValueError(f"{name}={text!r} is empty or holds control characters; give a plain value")
    return text


def directive_word(name: str, value: object) -> str:
    """A value the template puts into an ``#SBATCH`` line itself: sbatch splits those lines at
    whitespace, so a space would add options of its own."""
    text = checked_value(name, value)
    if any(c.isspace() for c in text):
        raise ValueError(f"{name}={text!r} holds whitespace, which sbatch would read as more options")
    return text


def with_env(env: Mapping[str, str], argv: Sequence[str]) -> list[str]:
    """``env K=V … argv``: variables for a remote command without a shell."""
    return ["env", *(f"{k}={v}" for k, v in env.items()), *argv] if env else list(argv)


# -- submitting ---------------------------------------------------------------------------------

def sbatch_user_argv(args: Sequence[str]) -> list[str]:
    """``%%sbatch``'s: the user's own options after ``--parsable`` (the script on standard input)."""
    return ["sbatch", "--parsable", *args]


def sbatch_argv(options: Mapping[str, object], job_name: str) -> list[str]:
    """``sbatch --parsable --name=value …`` for a kernel's job: each setting one argv element.
    Empty settings (None, "", 0) are left to the site."""
    argv = ["sbatch", "--parsable", f"--job-name={checked_value('job_name', job_name)}"]
    for name, value in options.items():
        if value is None or value == "" or value == 0:
            continue
        argv.append(f"--{name.replace('_', '-')}={checked_value(name, value)}")
    return argv


# -- the queue --------------------------------------------------------------------------------

def watch_argv(job_ids: Iterable[str]) -> list[str]:
    """squeue for the provisioner's poll: the listed jobs, one line each (:data:`WATCH_FIELDS`)."""
    return ["squeue", "-h", "-j", ",".join(job_ids), "-o", SEP.join(f for _, f in WATCH_FIELDS)]


def squeue_argv(args: Sequence[str] = ()) -> list[str]:
    """squeue for the magics and the sidebar (:data:`SQUEUE_FIELDS`); run with :data:`EPOCH_ENV`."""
    return ["squeue", "--noheader", "--array", "-o", SEP.join(f for _, f in SQUEUE_FIELDS), *args]


def running_nodes_argv(user: str) -> list[str]:
    """The user's running jobs and their node lists: ``job id SEP nodelist`` a line."""
    return ["squeue", "-h", "-u", checked_value("user", user), "-t", "RUNNING", "-o", f"%i{SEP}%N"]


def sacct_argv(args: Sequence[str] = ()) -> list[str]:
    return ["sacct", "--parsable2", f"--delimiter={SEP}", "--format=" + ",".join(SACCT_FIELDS), *args]


def sinfo_argv(args: Sequence[str] = ()) -> list[str]:
    return ["sinfo", "--noheader", "-N", "-o", SEP.join(SINFO_FORMAT), *args]


def sinfo_json_argv() -> list[str]:
    return ["sinfo", "--json"]


def job_argv(job_id: object) -> list[str]:
    """``scontrol show job`` in its multi-line form (see :func:`..parse.scontrol_job`)."""
    return ["scontrol", "show", "job", checked_value("job_id", job_id)]


def nodes_argv(nodes: Iterable[str]) -> list[str]:
    """``scontrol show node --oneliner`` for a node list (a hostlist expression is fine)."""
    return ["scontrol", "show", "node", "--oneliner", checked_value("nodes", ",".join(nodes))]


def node_address_argv(node: str) -> list[str]:
    return ["sinfo", "-h", "-N", "-n", checked_value("node", node), "-O", "NodeAddr:256"]


def partitions_argv() -> list[str]:
    return ["scontrol", "show", "partition", "--oneliner"]


def associations_argv(user: str) -> list[str]:
    return ["sacctmgr", "show", "assoc", f"user={checked_value('user', user)}", "--parsable2", "--noheader",
            "format=Account,Partition,QOS,DefaultQOS,MaxWall,MaxNodes"]


def default_account_argv(user: str) -> list[str]:
    return ["sacctmgr", "show", "user", checked_value("user", user), "format=DefaultAccount", "--parsable2",
            "--noheader"]


# -- cancelling -------------------------------------------------------------------------------

def signal_argv(job_id: str, signal: str = "TERM") -> list[str]:
    """The first step of the cancel sequence: a signal to every step of a running job, the batch
    shell included (``--full``), so the kernel can end as on a plain SIGTERM."""
    return ["scancel", f"--signal={signal}", "--full", checked_value("job_id", job_id)]


def scancel_user_argv(args: Sequence[str]) -> list[str]:
    """``%scancel``'s: the user's own words, as scancel takes them."""
    return ["scancel", *args]


def step_argv(job_id: str, node: str) -> list[str]:
    """A one-task step on ``node`` inside the running job, beside its other steps (``--overlap``):
    how the server reaches a kernel where SSH to compute nodes is not allowed."""
    return ["srun", f"--jobid={checked_value('job_id', job_id)}", "--overlap", "--nodes=1", "--ntasks=1",
            f"--nodelist={checked_value('node', node)}", "--quiet"]


def cancel_argv(job_id: str) -> list[str]:
    """The last step: cancel the job outright (also the only step for a job still waiting)."""
    return ["scancel", checked_value("job_id", job_id)]

