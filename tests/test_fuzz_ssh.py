"""Bad input through a real sshd: hostile kernelspecs start verbatim or fail clearly, and a
canary file proves that no value reached a shell as code.

Setup lines are shell by design (the user's own ``module load`` lines run in a login bash),
so they are not fuzzed for injection; a bad one must fail the start with its exit status and
its output. Every other field (env values, argv elements, cwd, remote_python, username, the
kernelspec's name) is data, and a ``touch CANARY`` hidden in it must never run.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import tempfile
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from traitlets import TraitError

from jupyter_hpc.errors import HPCError, KernelLaunchError, SSHConnectError
from kernel_helpers import start_failure, execute, running_kernel
from test_fuzz_pure import ARG_CHARS, is_clear, json_values, shellish

LAUNCH_KEEPING_ARGV = (
    "import sys; from ipykernel.kernelapp import IPKernelApp; "
    "IPKernelApp.launch_instance(argv=['-f', sys.argv[1]])"
)


def hostile(canary: str) -> list[str]:
    """Values that would create ``canary`` if any shell, at any quoting level, evaluated them."""
    return [
        f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"| touch {canary}",
        f"&& touch {canary} &&", f"'; touch {canary}; '", f'"; touch {canary}; "', f"\ntouch {canary}\n",
        f"x' \"$(touch {canary})\" '", f"\\'; touch {canary} #", f"$((1+1)) <(touch {canary})",
        "ünïcødé ✓ 雪 \u2028", "-f", "--", "*", "~", "{connection_file}", "a\tb\rc", "",
    ]


def remote_json(client, expression: str):
    out = execute(client, f"import json, os, sys; print(json.dumps({expression}))")
    assert out["error"] is None, out
    return json.loads(out["stdout"])


def start_error(kernel_name: str) -> Exception:
    return start_failure(kernel_name)[0]


def assert_clear(error: Exception, kind: type = HPCError) -> str:
    assert isinstance(error, kind), f"{type(error).__name__}: {error}"
    assert is_clear(str(error)), repr(str(error))
    return str(error)


def test_hostile_env_values_and_argv_arrive_verbatim(ssh_spec, kernelspecs, sshd, kernel_user, remote_python, canary):
    values = hostile(canary)
    env = {f"FUZZ_{i}": value for i, value in enumerate(values)}
    config = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python, env=env)
    argv = [remote_python, "-c", LAUNCH_KEEPING_ARGV, "{connection_file}", *values]
    for setup in ([], ["true"]):  # straight exec, and through the setup lines' login bash
        name = kernelspecs(f"fuzz-argv-{len(setup)}", dict(config, setup=setup), argv=argv)
        with running_kernel(name) as (km, client):
            got_env = remote_json(client, "{k: v for k, v in os.environ.items() if k.startswith('FUZZ_')}")
            assert got_env == env
            got_argv = remote_json(client, "sys.argv[2:]")
            assert got_argv == [v.replace("{connection_file}", got_argv[values.index("{connection_file}")]) for v in values]
            assert got_argv[values.index("{connection_file}")].endswith("/kernel.json")


@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_env_and_argv_arrive_verbatim(data, kernelspecs, sshd, kernel_user, remote_python, canary):
    values = data.draw(st.lists(shellish(canary).filter(lambda v: "$" not in v and "{connection_file}" not in v),
                                min_size=1, max_size=4))
    names = data.draw(st.lists(st.from_regex(r"\AFUZZ_[A-Z0-9_]{1,8}\Z"), min_size=len(values),
                               max_size=len(values), unique=True))
    env = dict(zip(names, values))
    config = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python, env=env,
                                     setup=data.draw(st.sampled_from([[], ["true"]])))
    name = kernelspecs(f"fuzz-{uuid.uuid4().hex[:8]}", config,
                       argv=[remote_python, "-c", LAUNCH_KEEPING_ARGV, "{connection_file}", *values])
    with running_kernel(name) as (km, client):
        assert remote_json(client, "{k: os.environ.get(k) for k in %r}" % names) == env
        assert remote_json(client, "sys.argv[2:]") == values


def test_hostile_env_name_fails_clearly(ssh_spec, canary):
    error = start_error(ssh_spec(env={f"A=B; touch {canary}": "x"}))
    assert "illegal environment variable name" in assert_clear(error, KernelLaunchError)


def test_hostile_cwd_is_a_directory_name(ssh_spec, kernel_user, canary):
    marker = os.path.basename(canary)  # a directory name holds no '/': touch it where the shell is
    parent = tempfile.mkdtemp(prefix="fuzz-cwd-")
    try:
        cwd = os.path.join(parent, f"a b $(touch {marker}) `touch {marker}` ; touch {marker} '\" \u2028 ✓")
        os.mkdir(cwd)
        os.chmod(parent, 0o755)
        os.chmod(cwd, 0o777)
        with running_kernel(ssh_spec(cwd=cwd, setup=["true"])) as (km, client):
            assert remote_json(client, "os.getcwd()") == cwd
        error = start_error(ssh_spec("fuzz-no-cwd", cwd=f"/nonexistent/$(touch {canary})"))
        assert "does not exist" in assert_clear(error, KernelLaunchError)
        assert os.listdir(cwd) == [] and os.listdir(parent) == [os.path.basename(cwd)]
        assert not os.path.exists(os.path.join(pwd.getpwnam(kernel_user.pw_name).pw_dir, marker))
    finally:
        shutil.rmtree(parent)


@pytest.mark.parametrize("remote_python", ["python3; touch {canary}", "$(touch {canary})", "`touch {canary}`",
                                           "python3\ntouch {canary}", "/nonexistent/python3 -c 'x'"])
def test_hostile_remote_python_is_not_found(ssh_spec, canary, remote_python):
    error = start_error(ssh_spec(remote_python=remote_python.replace("{canary}", canary)))
    assert "was not found" in assert_clear(error, KernelLaunchError)


@pytest.mark.parametrize("username", [
    "hpcuser; touch {canary}", "$(touch {canary})",
    "hpcuser\ntouch {canary}",
])
def test_hostile_username_is_refused_by_ssh(ssh_spec, canary, username):
    error = start_error(ssh_spec(username=username.replace("{canary}", canary), launch_timeout=10))
    assert_clear(error, SSHConnectError)


def test_hostile_kernelspec_name_is_data(kernelspecs, sshd, kernel_user, remote_python):
    """The name travels to the remote in JSON only; a 'touch' in it creates nothing, anywhere."""
    marker = f"jupyter-hpc-canary-{uuid.uuid4().hex}"
    name = f"fuzz; touch {marker} $(touch {marker}) `touch {marker}` | 'q\" \n✓".lower()
    config = sshd.provisioner_config(kernel_user.pw_name, remote_python=remote_python)
    kernelspecs(name, config)
    places = [os.path.join(pwd.getpwnam(kernel_user.pw_name).pw_dir, marker), os.path.join(os.getcwd(), marker),
              os.path.join("/tmp", marker)]
    try:
        with running_kernel(name) as (km, client):
            assert remote_json(client, "1 + 1") == 2
    finally:
        created = [path for path in places if os.path.exists(path)]
        for path in created:
            os.unlink(path)
    assert created == []


@pytest.mark.parametrize("setup, expected", [
    (["echo 'module: python/9.9 not found' >&2", "exit 3"], ["status 3", "python/9.9 not found"]),
    (["module_that_does_not_exist load python"], ["status 127", "module_that_does_not_exist"]),
    (["echo 'unterminated"], ["status 2", "unexpected EOF"]),
])
def test_bad_setup_fails_clearly_with_status_and_output(ssh_spec, setup, expected):
    error = start_error(ssh_spec(setup=setup))
    message = assert_clear(error, KernelLaunchError)
    for piece in expected:
        assert piece in message


# -- the kernelspec's provisioner config, any JSON at all ------------------------------------

CONFIG_NAMES = ["host", "port", "username", "client_keys", "known_hosts", "jump_host", "remote_python", "env",
                "cwd", "setup", "launch_timeout", "remote_transport", "lease", "partition", "time", "nodes",
                "extra_directives", "queue_timeout", "poll_interval", "node_access", "no_such_setting"]


@settings(max_examples=150, deadline=None, database=None)
@given(provisioner=st.sampled_from(["hpc-ssh", "hpc-slurm"]),
       config=st.dictionaries(st.sampled_from(CONFIG_NAMES), st.one_of(json_values(4), st.text(alphabet=ARG_CHARS)),
                              max_size=5))
def test_any_provisioner_config_builds_or_fails_as_a_config_error(provisioner, config):
    """What a kernel.json may hold: either a provisioner, or a TraitError/ValueError naming the
    setting, raised before anything connects anywhere."""
    from jupyter_client.kernelspec import KernelSpec
    from jupyter_client.provisioning import KernelProvisionerFactory

    spec = KernelSpec(argv=["python3", "-f", "{connection_file}"], display_name="fuzz", language="python",
                      metadata={"kernel_provisioner": {"provisioner_name": provisioner, "config": config}})
    try:
        KernelProvisionerFactory.instance().create_provisioner_instance("fuzz-id", spec, parent=None)
    except (TraitError, ValueError) as exc:
        assert str(exc).strip()
