"""Bad input, fuzzed with hypothesis: the pure functions between users, SSH and SLURM.

Each property says what must hold for *any* input: an answer or a clear, typed error, never
another exception, never text a shell or sbatch would reinterpret. Examples hypothesis found
that once broke a property are pinned with ``@example``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
import subprocess
import sys
import tempfile
import time
import unicodedata
from unittest import mock

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jupyter_hpc.errors import HPCError, KernelLaunchError, SlurmError
from jupyter_hpc.launcher import parse_answer
from jupyter_hpc.launcher import remote_launcher as rl
from jupyter_hpc.magics.dialect import SEP, SQUEUE_FIELDS, Slurm, SlurmJSON
from jupyter_hpc.slurm.batch import DEFAULT_BATCH_TEMPLATE, render_batch_script
from jupyter_hpc.slurm.commands import checked_value, sbatch_argv
from jupyter_hpc.slurm.parse import sbatch_job_id
from jupyter_hpc.slurm.site import SlurmQueue
from jupyter_hpc.slurm.states import JobState

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Text a hostile or careless user might type: shell metacharacters, quotes, newlines, unicode.
SHELLISH = [
    "; touch {canary}", "$(touch {canary})", "`touch {canary}`", "| touch {canary}",
    "&& touch {canary}", "'; touch {canary}; '", '"; touch {canary}; "', "\ntouch {canary}\n",
    "$HOME", "${HOME}", "~", "*", "?", "[a]", "{a,b}", "{connection_file}", "-rf", "--", "", " ", "\t", "\\",
    "ünïcødé ✓ 雪", "\u2028", "\x85", "a\rb", "$((1+1))", "<(touch {canary})", ">{canary}",
]


# What an argv element or environment value can hold: anything but NUL (and lone surrogates,
# which are not text and cannot be encoded for exec).
ARG_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def shellish(canary: str = "/nonexistent/canary") -> st.SearchStrategy[str]:
    """Hypothesis text mixed with pieces that would run ``touch canary`` if a shell saw them."""
    pieces = st.sampled_from([piece.replace("{canary}", canary) for piece in SHELLISH])
    return st.one_of(
        pieces,
        st.text(alphabet=ARG_CHARS, max_size=40),
        st.lists(st.one_of(pieces, st.text(alphabet=ARG_CHARS, max_size=5)), max_size=4).map("".join),
    )


def is_clear(message: str) -> bool:
    """Non-empty, and nothing that is not text for a person (control characters, escapes)."""
    return bool(message.strip()) and all(
        c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs") for c in message
    )


# -- the launcher's answer, as the server reads it --------------------------------------------

GOOD_ANSWER = {
    "ok": True, "pid": 4242, "host": "login1", "transport": "ipc", "ip": "/run/k",
    "ports": {name: i + 1 for i, name in enumerate(rl.CHANNELS)}, "kernel_dir": "/run/x",
    "connection_file": "/run/x/kernel.json",
}


def json_values(max_leaves: int = 10) -> st.SearchStrategy:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
        max_leaves=max_leaves,
    )


def mangled_answers() -> st.SearchStrategy[bytes]:
    """A good answer with one field dropped, retyped, or the line truncated."""
    good = json.dumps(GOOD_ANSWER).encode()
    dropped = st.sampled_from(sorted(GOOD_ANSWER)).map(
        lambda key: json.dumps({k: v for k, v in GOOD_ANSWER.items() if k != key}).encode())
    retyped = st.tuples(st.sampled_from(sorted(GOOD_ANSWER)), json_values(4)).map(
        lambda kv: json.dumps(dict(GOOD_ANSWER, **{kv[0]: kv[1]})).encode())
    bad_port = st.tuples(st.sampled_from(rl.CHANNELS), json_values(3)).map(
        lambda kv: json.dumps(dict(GOOD_ANSWER, ports=dict(GOOD_ANSWER["ports"], **{kv[0]: kv[1]}))).encode())
    truncated = st.integers(0, len(good)).map(lambda n: good[:n])
    return st.one_of(dropped, retyped, bad_port, truncated)


@FAST
@given(
    line=st.one_of(st.binary(max_size=300), mangled_answers(), json_values().map(lambda v: json.dumps(v).encode())),
    exit_status=st.one_of(st.none(), st.integers(-1000, 1000)),
    stderr=st.text(max_size=200),
)
@example(line=b"[" * 100_000, exit_status=None, stderr="")  # deep nesting: RecursionError in json
@example(line=b'{"ok": false, "error": "\\u001b[31mboom\\u001b[0m"}', exit_status=1, stderr="")
@example(line=b"", exit_status=1, stderr="\x1b[2Jcleared\x07")
@example(line=json.dumps(dict(GOOD_ANSWER, ports=[1, 2])).encode(), exit_status=None, stderr="")
@example(line=json.dumps(dict(GOOD_ANSWER, pid="12; rm -rf /")).encode(), exit_status=None, stderr="")
def test_parse_answer_returns_a_usable_answer_or_a_clear_launch_error(line, exit_status, stderr):
    try:
        answer = parse_answer(line, host="login1", remote_python="python3", exit_status=exit_status, stderr=stderr)
    except KernelLaunchError as exc:
        assert is_clear(exc.message), repr(exc.message)
        return
    # Whatever is returned, the server can use without another check.
    assert answer["ok"] is True
    assert isinstance(answer["pid"], int) and answer["pid"] > 0
    assert answer["transport"] in ("ipc", "tcp") and isinstance(answer["ip"], str)
    assert isinstance(answer["kernel_dir"], str)
    assert all(isinstance(answer["ports"][name], int) for name in rl.CHANNELS)


# -- the remote launcher fed garbage on its stdin ---------------------------------------------

@contextlib.contextmanager
def private_home():
    """A temp HOME and XDG_RUNTIME_DIR, as the remote user's, for one launcher run."""
    with tempfile.TemporaryDirectory(prefix="fuzz-launcher-") as root:
        home, runtime = os.path.join(root, "home"), os.path.join(root, "run")
        os.mkdir(home, 0o700)
        os.mkdir(runtime, 0o700)
        with mock.patch.dict(os.environ, {"HOME": home, "XDG_RUNTIME_DIR": runtime}):
            yield root


def files_under(root: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(path, name), root)
        for path, dirs, names in os.walk(root) for name in names + [d for d in dirs if d not in ("home", "run", "jupyter-hpc")]
    )


def run_launcher(data: bytes) -> tuple[int, list[bytes]]:
    stdout = io.BytesIO()
    status = rl.main(io.BytesIO(data), stdout)
    return status, stdout.getvalue().splitlines()


# Requests shaped like the server's, every field possibly wrong. argv[0] never names a program
# that exists (or one that exits at once), so no fuzzed request can start anything.
DYING = [sys.executable, "-c", "import sys; print('dying', flush=True); sys.exit(3)", "{connection_file}"]
REQUEST_FIELDS = {
    "argv": st.one_of(
        st.lists(shellish(), max_size=3).map(lambda rest: ["/nonexistent/python", *rest]),
        st.just(DYING),
        st.just([]), json_values(4),
    ),
    "env": st.one_of(st.dictionaries(shellish(), shellish(), max_size=3), json_values(4)),
    "cwd": st.one_of(st.none(), shellish(), st.just("/nonexistent"), st.just("~"), json_values(2)),
    "setup": st.one_of(st.lists(shellish(), max_size=3), json_values(3)),
    "key": st.one_of(st.text(max_size=20), json_values(2)),
    "transport": st.one_of(st.sampled_from(["ipc", "tcp", "udp", ""]), json_values(2)),
    "ip": st.one_of(st.sampled_from(["127.0.0.1", "256.1.1.1", "not an ip", ""]), json_values(2)),
    "kernel_id": st.one_of(st.uuids().map(str), shellish(), json_values(2)),
    "signature_scheme": json_values(2),
    "kernel_dir": st.one_of(shellish(), st.just("/tmp"), st.just("../.."), json_values(2)),
    "pid": st.one_of(st.integers(-2**70, 2**70), st.text(max_size=8), json_values(2)),
    "lease": st.one_of(st.sampled_from([0, 0.0, -1]), st.text(max_size=4)),
    "ready_timeout": st.sampled_from([0, 0.01, 0.05, -5, "x"]),
    "answer_file": st.sampled_from(["/nonexistent/answer.json", "~/absent.json"]),
}


@st.composite
def requests(draw):
    request = {"op": draw(st.sampled_from(["launch", "attach"]))}
    for name in draw(st.sets(st.sampled_from(sorted(REQUEST_FIELDS)))):
        request[name] = draw(REQUEST_FIELDS[name])
    if request.get("argv") == DYING:
        request["ready_timeout"] = 5  # time for the dying 'kernel' to be seen dying
    if "answer_file" in request:
        request["ready_timeout"] = 0.01  # the launcher waits this long for a batch job's answer
    return request


def request_lines() -> st.SearchStrategy[bytes]:
    structured = requests().map(lambda r: json.dumps(r).encode() + b"\n")
    truncated = st.tuples(structured, st.integers(0, 400)).map(lambda t: t[0][: t[1]])
    return st.one_of(st.binary(max_size=200), structured, truncated,
                     json_values().map(lambda v: json.dumps(v).encode() + b"\n"))


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=request_lines())
@example(data=b"[" * 100_000 + b"\n")  # RecursionError in json.loads
@example(data=b'{"op": "launch", "key": "k", "argv": ["/nonexistent/python"], "env": {"A=B": "x"}}\n')
@example(data=b'{"op": "launch", "key": "k", "argv": ["/nonexistent/python"], "lease": "nan"}\n')
@example(data=b'{"op": "attach", "kernel_dir": "/tmp", "pid": 1}\n')
@example(data=b'{"op": "launch", "argv": 1}\n')  # found by this test in a full run
@example(data=b'{"op": "attach", "argv": ["x", 2]}\n')
@example(data=b'{"op": "attach", "answer_file": "/nonexistent", "ready_timeout": 1e400}\n')
@example(data=b'{"op": "launch", "key": "k", "argv": ["/nonexistent/python"], "ready_timeout": NaN}\n')
@example(data=json.dumps({"op": "launch", "key": "k", "transport": "tcp", "argv": DYING}).encode() + b"\n")
@example(data=json.dumps({"op": "launch", "key": "k", "transport": "ipc", "argv": DYING}).encode() + b"\n")
def test_launcher_answers_garbage_with_one_json_error_line_and_leaves_nothing(data):
    """A request the launcher cannot carry out gets one JSON error line; one it can (a TCP
    'kernel' that dies at once) gets its answer, and the channel's end cleans up after it."""
    with private_home() as root:
        status, lines = run_launcher(data)
        if data == b"":  # EOF before any request: a launcher dismissed from standby
            assert status == 0 and lines == [] and files_under(root) == []
            return
        answer = json.loads(lines[0])
        if answer["ok"]:
            assert status == 0 and all("event" in json.loads(line) for line in lines[1:])
        else:
            assert status != 0 and len(lines) == 1, lines
            assert isinstance(answer["error"], str) and answer["error"].strip()
            assert "Traceback" not in answer["error"]
        assert files_under(root) == []


def connection_files() -> st.SearchStrategy[bytes]:
    good = {"transport": "ipc", "ip": "/run/k", "key": "k", "signature_scheme": "hmac-sha256",
            **{name + "_port": i + 1 for i, name in enumerate(rl.CHANNELS)}}
    retyped = st.tuples(st.sampled_from(sorted(good)), json_values(3)).map(lambda kv: dict(good, **{kv[0]: kv[1]}))
    dropped = st.sampled_from(sorted(good)).map(lambda key: {k: v for k, v in good.items() if k != key})
    text = st.one_of(st.just(good), retyped, dropped, json_values()).map(lambda v: json.dumps(v).encode())
    return st.one_of(text, st.binary(max_size=100), text.flatmap(lambda t: st.integers(0, len(t)).map(lambda n: t[:n])))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(contents=connection_files())
@example(contents=b"\xff\xfe garbage")
@example(contents=b"[" * 100_000)
def test_attach_to_a_kernel_with_any_connection_file_answers_usably_or_clearly(contents):
    """Reattaching reads the remote kernel.json: whatever it holds, the answer either passes
    the server's checks or is an error naming the file."""
    with private_home():
        kernel_dir = rl.make_kernel_dir(rl.private_runtime_dir(), "fuzz")
        connection_file = os.path.join(kernel_dir, rl.CONNECTION_FILE)
        with open(connection_file, "wb") as handle:
            handle.write(contents)
        kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", connection_file],
                                  start_new_session=True)
        try:
            while connection_file.encode() not in rl.AttachedProcess(kernel.pid).cmdline():
                time.sleep(0.002)  # until the 'kernel' has exec'd
            request = {"op": "attach", "kernel_dir": kernel_dir, "pid": kernel.pid, "lease": 0}
            status, lines = run_launcher(json.dumps(request).encode() + b"\n")
            try:
                parse_answer(lines[0], host="login1", remote_python="python3", exit_status=None, stderr="")
            except KernelLaunchError as exc:
                assert status == 1 and len(lines) == 1 and is_clear(exc.message)
                assert connection_file in exc.message
            else:
                assert status == 0 and not os.path.exists(kernel_dir)  # the channel's end cleaned up
        finally:
            kernel.kill()
            kernel.wait()


# -- argv and env stay data on their way to the kernel ---------------------------------------

plain_args = st.lists(shellish(), max_size=5)
setup_lines = st.lists(st.sampled_from(["true", "export X=1", "module() { :; }", ": 'quoted ; $(x)'", "cd ."]), max_size=3)


@FAST
@given(args=plain_args, setup=st.lists(st.text(max_size=30), max_size=4), connection_file=shellish())
def test_kernel_argv_is_passed_to_the_setup_shell_as_positional_args(args, setup, connection_file):
    request = {"argv": ["python", *args, "{connection_file}"], "setup": setup}
    argv = rl.kernel_command(request, connection_file)
    expected = ["python", *(a.replace("{connection_file}", connection_file) for a in args), connection_file]
    if not setup:
        assert argv == expected
        return
    shell, script, name, positional = argv[:3], argv[3], argv[4], argv[5:]
    assert shell == ["/bin/bash", "-l", "-c"] and name == "jupyter-hpc-kernel"
    assert positional == expected  # each element verbatim, none folded into the script's text
    assert script == rl.SETUP_PREAMBLE + "\n".join(setup) + '\nexec "$@"\n'


@SLOW
@given(args=plain_args, setup=setup_lines)
@example(args=["$(touch {canary})", "`touch {canary}`", "; touch {canary}", "a\nb", "'", '"'], setup=["true"])
def test_kernel_argv_arrives_verbatim_through_a_real_bash(args, setup):
    """Run the launcher's command line for real: the 'kernel' prints the argv it received."""
    with tempfile.TemporaryDirectory() as root:
        canary = os.path.join(root, "CANARY")
        args = [a.replace("{canary}", canary) for a in args]
        script = "import json, sys; print(json.dumps(sys.argv[1:]))"
        request = {"argv": [sys.executable, "-c", script, *args], "setup": setup or ["true"],
                   "setup_shell": ["/bin/bash", "-c"]}
        argv = rl.kernel_command(request, os.path.join(root, "kernel.json"))  # {connection_file} filled
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=root)
        assert done.returncode == 0, done.stderr
        connection_file = os.path.join(root, "kernel.json")
        assert json.loads(done.stdout) == [a.replace("{connection_file}", connection_file) for a in args]
        assert not os.path.exists(canary)


@FAST
@given(env=st.dictionaries(shellish(), shellish(), max_size=6))
@example(env={"X": "$(touch /tmp/never)", "Y": "${HOME}/x", "Z": "$$", "W": "${UNSET_NAME}"})
def test_kernel_environment_is_data_and_expands_only_dollar_names(env):
    base = {"HOME": "/home/u", "PATH": "/bin", "JPY_PARENT_PID": "1"}
    result = rl.kernel_environment({"env": env}, environ=base)
    assert "JPY_PARENT_PID" not in result or "JPY_PARENT_PID" in env
    for name, value in env.items():
        expected = string.Template(value).safe_substitute(base)
        assert result[name] == expected
        if "$" not in value:
            assert result[name] == value  # verbatim: no quoting, no word splitting


# -- SLURM settings: one argv element, one directive line -------------------------------------

CONTROL = "".join(chr(c) for c in [*range(32), 127, *range(0x80, 0xA0)]) + "\u2028\u2029"
plain = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)
with_control = st.tuples(st.text(max_size=10), st.sampled_from(CONTROL), st.text(max_size=10)).map("".join)
SETTINGS = ["partition", "account", "qos", "time", "constraint", "reservation", "job_name"]


@FAST
@given(name=st.sampled_from(SETTINGS), value=st.one_of(plain, with_control, st.just("")))
@example(name="partition", value="debug\n#SBATCH --wrap=touch /tmp/x")
@example(name="account", value="x\x85y")  # NEL: a C1 control character
def test_checked_value_keeps_plain_values_and_names_the_setting_it_refuses(name, value):
    refused = not value or any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value)
    try:
        text = checked_value(name, value)
    except ValueError as exc:
        assert refused, value
        assert str(exc).startswith(f"{name}=") and is_clear(str(exc))
        return
    assert not refused and text == value


@FAST
@given(options=st.dictionaries(st.sampled_from(SETTINGS[:-1]), st.one_of(plain, with_control, st.integers(0, 10**6))),
       job_name=st.one_of(plain, with_control))
def test_sbatch_argv_gives_each_setting_one_element(options, job_name):
    try:
        argv = sbatch_argv(options, job_name)
    except ValueError as exc:
        assert any(str(exc).startswith(f"{n}=") for n in [*options, "job_name"])
        return
    assert argv[:3] == ["sbatch", "--parsable", f"--job-name={job_name}"]
    given_options = {k: v for k, v in options.items() if v not in ("", 0, None)}
    assert argv[3:] == [f"--{k.replace('_', '-')}={v}" for k, v in given_options.items()]


@FAST
@given(directives=st.lists(st.one_of(plain, with_control), max_size=4),
       job_name=st.one_of(st.from_regex(r"\Ajupyter-[a-z0-9._-]{1,20}\Z"), plain, with_control),
       output=st.one_of(st.just("/home/u/.jupyter-hpc/job-%j.out"), plain, with_control))
@example(directives=[], job_name="jupyter-x\n#SBATCH --wrap=touch /tmp/x", output="/home/u/o")
@example(directives=[], job_name="jupyter-x --chdir=/tmp", output="/home/u/o")
@example(directives=[], job_name="jupyter-x", output="/home/u/o --comment=injected")
def test_render_batch_script_keeps_each_directive_on_its_own_line(directives, job_name, output):
    values = dict(job_name=job_name, output=output, extra_directives=directives, remote_python="py thon",
                  launcher="/home/u/l.py", request_file="/home/u/req; touch x", answer_file="$(a)")
    try:
        script = render_batch_script(DEFAULT_BATCH_TEMPLATE, **values)
    except ValueError as exc:
        assert is_clear(str(exc))
        return
    lines = script.split("\n")
    assert lines[1] == f"#SBATCH --job-name={job_name}" and lines[2] == f"#SBATCH --output={output}"
    # sbatch splits a directive line at whitespace: the generated values must be one word each
    assert len(lines[1].split()) == 2 and len(lines[2].split()) == 2
    assert lines[3:3 + len(directives)] == [f"#SBATCH {d}" for d in directives]
    assert lines[3 + len(directives):] == ["", "exec 'py thon' /home/u/l.py --batch '/home/u/req; touch x' '$(a)'"]


@FAST
@given(stdout=st.one_of(st.text(max_size=40), st.from_regex(r"\A\d{1,12}(;[a-z]{1,8})?\n?\Z")))
@example(stdout="²")  # str.isdigit() says yes; squeue -j would not
@example(stdout="١٢٣")
def test_parse_job_id_is_ascii_digits_or_a_slurm_error(stdout):
    try:
        job_id = sbatch_job_id(stdout)
    except SlurmError as exc:
        assert is_clear(exc.message)
        return
    assert job_id.isascii() and job_id.isdigit()


# -- odd scheduler output ----------------------------------------------------------------------

WORDS = ["", "N/A", "None", "UNLIMITED", "Unknown", "(null)", "RUNNING", "PENDING", "idle*", "mix~",
         "1-02:03:04", "02:03:04", "3:04", "00:01.234", "30", "99999999999999999999", "-5", "1e400",
         "nan", "²", "١٢٣", "0/1/0/1", "1/2", "1700000000", "2024-01-02T03:04:05", "9" * 30 + ":00:00",
         "99999999-00:00:00", "ünï ✓", "a" * 5000, "x|y", ";", "1.5", "inf"]
field = st.one_of(st.sampled_from(WORDS), st.text(alphabet=st.characters(blacklist_characters="\n\r\x1f"), max_size=15))


def scheduler_lines(sep: str = SEP, width: int = 18):
    """Lines with about ``width`` fields, sometimes fewer or more, joined by ``sep``."""
    row = st.integers(0, width + 3).flatmap(lambda n: st.lists(field, min_size=n, max_size=n)).map(sep.join)
    return st.lists(row, max_size=6).map("\n".join)


def assert_frame_or_clear_error(parse, text):
    try:
        result = parse(text)
    except HPCError as exc:
        assert is_clear(exc.message)
        return None
    assert isinstance(result, pd.DataFrame)
    return result


@FAST
@given(text=st.one_of(scheduler_lines(), st.text(max_size=200)))
@example(text=SEP.join(["1"] * 9 + ["9" * 30 + ":00:00"] + ["1"] * 8))  # Timedelta overflow
@example(text=SEP.join(["1"] * 9 + ["²"] + ["1"] * 8))  # isdigit but not int()
@example(text=SEP.join(["1"] * 11 + ["99999999999999999999"] + ["1"] * 6))  # epoch out of range
def test_parse_squeue_survives_odd_output(text):
    frame = assert_frame_or_clear_error(Slurm().parse_squeue, text)
    if frame is not None:
        assert list(frame.columns) == [name for name, _, _ in SQUEUE_FIELDS]
        assert len(frame) == len([line for line in text.splitlines() if line])


@FAST
@given(text=st.one_of(scheduler_lines(width=9), st.text(max_size=200)))
@example(text="debug*")  # no separators at all
@example(text=SEP.join(["debug", "n1", "idle", "4", "0/4/0/4", "1000", "900", "0.5"]))  # 8 fields
def test_parse_sinfo_survives_odd_output(text):
    assert_frame_or_clear_error(Slurm().parse_sinfo, text)


@st.composite
def sacct_texts(draw):
    header = draw(st.lists(st.sampled_from(["JobIDRaw", "JobID", "State", "ExitCode", "Elapsed", "Start",
                                             "NNodes", "JobName", "Reason", "Weird"]), min_size=1, max_size=6))
    body = draw(scheduler_lines(sep="|", width=len(header)))
    return "|".join(header) + "\n" + body


@FAST
@given(text=st.one_of(sacct_texts(), st.text(max_size=200)))
@example(text="JobID|State\n1_2.3|CANCELLED by 99999999999999999999999\n|")
@example(text="ExitCode\n:::\n²:١\n")
def test_parse_sacct_survives_odd_output(text):
    assert_frame_or_clear_error(lambda t: Slurm().parse_sacct(t, sep="|"), text)


@FAST
@given(text=st.one_of(st.text(max_size=100), json_values().map(json.dumps),
                      st.lists(st.dictionaries(st.sampled_from(["name", "state", "cpus", "cpu_load", "partitions",
                                                                "state_flags", "reason"]), json_values(3)),
                               max_size=3).map(lambda nodes: json.dumps({"nodes": nodes}))))
@example(text="[]")
@example(text='{"nodes": [{"cpu_load": "high"}]}')
@example(text='{"nodes": 5}')
def test_parse_sinfo_json_survives_odd_output(text):
    assert_frame_or_clear_error(SlurmJSON().parse_sinfo_json, text)


@FAST
@given(text=st.one_of(st.text(max_size=60), st.from_regex(r"\A\d{1,25}(;\w{0,5})?\n?\Z")))
@example(text="sbatch: warning: something\n")
def test_parse_sbatch_is_a_job_id_or_a_slurm_error(text):
    try:
        job_id = Slurm.parse_sbatch(text)
    except SlurmError as exc:
        assert is_clear(exc.message)
        return
    assert isinstance(job_id, int) and job_id >= 0


@FAST
@given(text=st.one_of(st.text(max_size=300),
                      st.lists(st.tuples(st.sampled_from(["JobId", "JobState", "Reason", "RunTime", "ExitCode",
                                                          "StdOut", "Requeue", "JobName"]), field),
                               max_size=8).map(lambda kvs: "\n".join(f"   {k}={v}" for k, v in kvs))))
def test_parse_job_status_survives_odd_output(text):
    try:
        status = Slurm.parse_job_status(text)
    except SlurmError as exc:
        assert is_clear(exc.message)
        return
    assert isinstance(status.state, str) and isinstance(status.finished, bool)


class FakeResult:
    def __init__(self, stdout, stderr, exit_status):
        self.stdout, self.stderr, self.exit_status = stdout, stderr, exit_status


class FakeConnection:
    """Just enough of SiteConnection for SlurmQueue: answers squeue with canned output."""

    class target:
        host = "login1"

    def __init__(self, result):
        self.result = result
        self.argv = None

    async def run(self, argv, check=True, **kwargs):
        self.argv = argv
        return self.result


@FAST
@given(stdout=st.one_of(scheduler_lines(sep="\x1f", width=4), st.text(max_size=200), st.none()),
       stderr=st.one_of(st.text(max_size=50), st.just("slurm_load_jobs error: Invalid job id specified")),
       exit_status=st.one_of(st.none(), st.integers(-1, 255)),
       job_ids=st.lists(st.from_regex(r"\A\d{1,8}\Z"), min_size=1, max_size=3))
@example(stdout="12\x1fRUNNING\x1fNone\x1fnode1\n12\x1fRUNNING", stderr="", exit_status=0, job_ids=["12"])
def test_squeue_lines_parse_to_job_states_or_a_slurm_error(stdout, stderr, exit_status, job_ids):
    import asyncio

    connection = FakeConnection(FakeResult(stdout, stderr, exit_status))
    try:
        states = asyncio.run(SlurmQueue(connection).query(job_ids))
    except SlurmError as exc:
        assert exit_status != 0 and is_clear(exc.message)
        return
    assert connection.argv[:4] == ["squeue", "-h", "-j", ",".join(job_ids)]
    for job_id, state in states.items():
        assert isinstance(state, JobState) and state.job_id == job_id and "\x1f" not in state.state
