"""Keeps every listener of an ipykernel private to its owner on a shared node.

The launcher writes this file, as ``sitecustomize.py``, into a 0700 directory of the user's
and puts that directory first on the kernel's ``PYTHONPATH`` (nothing else on the cluster
changes). On a login node 127.0.0.1 is everyone's, and an ipykernel listens on more than its
five channels (which the launcher already puts on Unix sockets):

* the IOPub pipe for forked subprocesses, a ZMQ PULL on 127.0.0.1 TCP: it binds a Unix
  socket in the kernel's 0700 directory instead;
* the debugger: ipykernel runs ``debugpy.listen(("127.0.0.1", port))``, which leaves a
  listener in the kernel for a moment (the adapter's endpoints) and starts debugpy's adapter
  with two TCP listeners (ipykernel's DAP link, and pydevd's). debugpy has no Unix-socket
  mode and says whoever reaches its port can run code. Each of these listeners here accepts
  a connection only if the peer's socket belongs to this user (the uid the kernel keeps for
  every loopback socket in ``/proc/net/tcp``); any other user's is closed before a byte is
  read or written. Where that check cannot be made, the debugger refuses to start.
* the cells the debugger dumps go to ``<kernel dir>/cells``, not to ``/tmp/ipykernel_<pid>``,
  a name another user can create first.
* no secret on a command line (``/proc/<pid>/cmdline`` is every user's): debugpy hands its
  adapter the access token pydevd checks as ``--server-access-token``; here it goes through a
  pipe on the adapter's stdin instead. pydevd would also write that token into the command
  line of every Python the user starts while debugging (to debug it too): that is off
  (``subProcess=False``), since JupyterLab's debugger shows the kernel's process only.

Why not the alternatives: a network namespace per kernel (``unshare -rn``) hides every port
but cuts the kernel off the network (no pip, no license server, no Dask) and needs user
namespaces, which many sites turn off. Turning the debugger off loses it. JupyterLab never
touches these ports: its debugger speaks DAP on the kernel's control channel and ipykernel
relays, so keeping the relay's TCP link owner-only keeps the debugger working.

It also makes xeus-python 0.19+ interruptible (as PyPI's wheel runs it, ``python -m
xpython_launcher``; conda's ``xpython`` binary is untried): xeus-python
answers SIGINT, its kernelspec's interrupt mode, by exiting, and an ``interrupt_request`` by
doing nothing (xeus-python#527, xeus#262 and #272, open upstream). Once its IPython shell
loads, the shim gives SIGINT a Python handler that raises KeyboardInterrupt in the cell being
run, as ipykernel does, and ignores it between cells (where xeus would end on it). Older
xeus-python (0.18 and before) idles in a C++ ZeroMQ poll that an interrupted system call
breaks, so it keeps its own behaviour.

``JUPYTER_HPC_LISTENERS`` says what to do: ``private`` or ``off`` (no debugger is offered,
``supported_features`` lacks it) for the kernel, ``adapter`` inside debugpy's adapter. The
shim acts only in the process it is meant for (the kernel is the one with its connection file
on the command line), then takes itself out of the environment, so the user's own
subprocesses never see it; another ``sitecustomize`` on the path still runs. Standard library
only, Python 3.8+, and cheap: it imports nothing beyond what the kernel imports anyway.
"""

import json
import os
import socket
import struct
import sys

ENV = "JUPYTER_HPC_LISTENERS"
MARKER = "listeners.json"  # in the kernel's directory: what the shim did, read by the launcher


def _settings():
    try:
        settings = json.loads(os.environ.get(ENV, ""))
    except ValueError:
        return None
    return settings if isinstance(settings, dict) else None


def _forget_self(settings):
    """Leave the environment and sys.path as they were before the launcher added the shim."""
    os.environ.pop(ENV, None)
    previous = settings.get("pythonpath")
    if previous:
        os.environ["PYTHONPATH"] = previous
    else:
        os.environ.pop("PYTHONPATH", None)
    here = settings.get("shim_dir")
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]


def _run_next_sitecustomize():
    me = sys.modules.get("sitecustomize")
    sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # noqa: F401  (the site's or the environment's own, if any)
    except ImportError:
        sys.modules["sitecustomize"] = me


# -- who is at the other end of a loopback TCP connection -----------------------------------

def _proc_address(host, port):
    """``host:port`` as /proc/net/tcp{,6} prints it (addresses in the kernel's word order)."""
    if ":" in host:
        words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, host))
        return "%s:%04X" % ("".join("%08X" % word for word in words), port)
    return "%08X:%04X" % (struct.unpack("=I", socket.inet_aton(host))[0], port)


def peer_uid(conn):
    """The uid owning the other end of an accepted loopback TCP connection, or None.

    Both ends are on this host, so the peer's socket is listed in /proc/net/tcp with its
    local and remote addresses swapped relative to ours, and its owner's uid.
    """
    try:
        peer, local = conn.getpeername()[:2], conn.getsockname()[:2]
        wanted = (_proc_address(*peer), _proc_address(*local))
    except (OSError, ValueError):
        return None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 7 and (fields[1], fields[2]) == wanted:
                        return int(fields[7])
        except (OSError, ValueError):
            continue
    return None


class OwnerOnlySocket(socket.socket):
    """A listening socket that hands out only connections from this user's own processes."""

    __slots__ = ()

    def accept(self):
        while True:
            conn, address = super().accept()
            if peer_uid(conn) == os.getuid():
                return conn, address
            _note("refused a connection from uid %s to %s" % (peer_uid(conn), self.getsockname()))
            conn.close()


def owner_only(create_server):
    def create(*args, **kwargs):
        server = create_server(*args, **kwargs)
        if server.family in (socket.AF_INET, socket.AF_INET6):
            server.__class__ = OwnerOnlySocket
        return server
    return create


def peer_check_works():
    """Whether this node lets us see a loopback peer's uid (a hidepid'd /proc/net may not)."""
    server = socket.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=2)
        conn = server.accept()[0]
        try:
            return peer_uid(conn) == os.getuid()
        finally:
            conn.close()
            client.close()
    except OSError:
        return False
    finally:
        server.close()


def _note(text):
    try:
        sys.__stderr__.write("[jupyter-hpc] %s\n" % text)
        sys.__stderr__.flush()
    except (AttributeError, OSError, ValueError):
        pass


# -- patches, applied as each module finishes loading ---------------------------------------

class _PatchedLoader:
    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, get_filename... for tracebacks and inspect
        return getattr(self._loader, name)


class _AfterImport:
    """A meta-path finder that patches named modules right after they load, once each."""

    def __init__(self, patches):
        self.patches = patches

    def find_spec(self, name, path=None, target=None):
        patch = self.patches.pop(name, None)
        if patch is None:
            return None
        if not self.patches:
            sys.meta_path.remove(self)
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchedLoader(spec.loader, patch)
                return spec
        return None


class Kernel:
    """The patches for one kernel process."""

    def __init__(self, settings):
        self.mode = settings.get("mode")
        self.kernel_dir = settings["kernel_dir"]
        self.settings = settings
        # The launcher reads this once the channels are bound, before ipykernel loads its
        # debugger: "debugger" is the mode asked, unless that load finds it cannot be kept.
        self.state = {"iopub_pipe": "tcp", "debugger": self.mode}
        self.pipes = 0

    def install(self):
        patches = {"ipykernel.iostream": self.patch_iostream, "ipykernel.debugger": self.patch_debugger,
                   "xeus_python_shell.shell": interruptible_xeus_python}
        if self.mode == "private":
            patches["ipykernel.compiler"] = self.patch_compiler
        sys.meta_path.insert(0, _AfterImport(patches))

    def record(self):
        path = os.path.join(self.kernel_dir, MARKER)
        try:
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(self.state))
            os.rename(path + ".tmp", path)
        except OSError:
            pass

    def patch_iostream(self, iostream):
        thread = getattr(iostream, "IOPubThread", None)
        if thread is None or not hasattr(thread, "_setup_pipe_in") or not hasattr(thread, "_setup_pipe_out"):
            self.state["iopub_pipe"] = "tcp (this ipykernel is not one the shim knows)"
            self.record()
            return
        shim = self
        zmq = iostream.zmq
        stream = iostream.ZMQStream

        def _setup_pipe_in(pipe):
            shim.pipes += 1
            pipe._hpc_pipe = "ipc://" + os.path.join(shim.kernel_dir, "pipe-%d" % shim.pipes)
            pipe._pipe_uuid = os.urandom(16)
            pipe_in = pipe.socket.context.socket(zmq.PULL)
            pipe_in.linger = 0
            try:
                pipe_in.bind(pipe._hpc_pipe)
            except zmq.ZMQError as exc:  # a path too long for a Unix socket: no pipe, not TCP
                _note("no IOPub pipe for forked subprocesses (%s)" % exc)
                pipe._pipe_flag = False
                pipe_in.close()
                return
            pipe._pipe_in = stream(pipe_in, pipe.io_loop)
            pipe._pipe_in.on_recv(pipe._handle_pipe_msg)

        def _setup_pipe_out(pipe):
            ctx = zmq.Context()  # a new context after the fork, as ipykernel does
            pipe_out = ctx.socket(zmq.PUSH)
            pipe_out.linger = 3000
            pipe_out.connect(pipe._hpc_pipe)
            return ctx, pipe_out

        thread._setup_pipe_in, thread._setup_pipe_out = _setup_pipe_in, _setup_pipe_out
        self.state["iopub_pipe"] = "ipc"
        self.record()

    def cells_dir(self):
        return os.path.join(self.kernel_dir, "cells")

    def patch_compiler(self, compiler):
        if hasattr(compiler, "get_tmp_directory"):
            compiler.get_tmp_directory = self.cells_dir

    def patch_debugger(self, debugger):
        if not getattr(debugger, "_is_debugpy_available", False):
            self.state["debugger"] = "none (no debugpy)"
        elif self.mode == "off":
            debugger._is_debugpy_available = False
            self.state["debugger"] = "off"
        elif hasattr(debugger, "Debugger") and hasattr(debugger.Debugger, "start"):
            if hasattr(debugger, "get_tmp_directory"):
                debugger.get_tmp_directory = self.cells_dir
            self.wrap_start(debugger.Debugger)
            self.state["debugger"] = "private"
        else:
            debugger._is_debugpy_available = False  # an ipykernel we cannot make private
            self.state["debugger"] = "off (this ipykernel is not one the shim knows)"
        self.record()

    def wrap_start(self, debugger_class):
        shim = self
        start = debugger_class.start

        def private_start(debugger):
            if not getattr(debugger, "_hpc_private", False):
                if not shim.private_debugpy():
                    return False
                debugger._hpc_private = True
            return start(debugger)

        debugger_class.start = private_start

    def private_debugpy(self):
        """Before ipykernel's ``debugpy.listen``: owner-only listeners here and in the adapter."""
        if not peer_check_works():
            _note("debugger refused: this node does not show whose a loopback connection is "
                  "(/proc/net/tcp), so debugpy's ports could not be kept to you. "
                  "Set the provisioner's debugger = 'off' to hide it.")
            return False
        import debugpy
        from debugpy.common import sockets

        sockets.create_server = owner_only(sockets.create_server)
        adapter_env = dict(os.environ)
        adapter_env[ENV] = json.dumps(dict(self.settings, mode="adapter"))
        shim_dir = self.settings["shim_dir"]
        adapter_env["PYTHONPATH"] = os.pathsep.join(filter(None, [shim_dir, os.environ.get("PYTHONPATH")]))
        debugpy.configure(pythonEnv=adapter_env, subProcess=False)
        debugpy.listen = token_through_stdin(debugpy.listen, adapter_env[ENV])
        return True


# -- xeus-python: SIGINT interrupts the cell instead of ending the kernel ---------------------

IPYTHON_SHELL = os.path.join("IPython", "core", "interactiveshell.py")


def interrupt_running_cell(signum, frame):
    """SIGINT's handler in xeus-python: KeyboardInterrupt in the cell being run, else nothing.

    A cell runs as code IPython's ``run_code`` executes (its module-level frame called from
    ``run_code``'s); the exception is then IPython's to report, as in ipykernel. Anywhere else,
    between cells in xeus-python's asyncio loop, or in IPython's own code, the exception would
    escape the loop and hang the kernel, so the signal is let go, as ipykernel lets an idle
    interrupt go. A cell waiting in a top-level ``await`` is not interrupted.
    """
    child = None
    while frame is not None:
        code = frame.f_code
        if code.co_name == "run_code" and code.co_filename.endswith(IPYTHON_SHELL):
            if child is not None and child.f_code.co_name == "<module>":
                raise KeyboardInterrupt
            return
        child, frame = frame, frame.f_back


def interruptible_xeus_python(shell):
    """Once xeus-python's shell module loads (in its main thread, after xeus-python set SIGINT
    to end the process), SIGINT interrupts cells, where its shell runs cells in an asyncio
    loop in the main thread (xeus-python-shell 0.7+, xeus-python 0.19+)."""
    import signal

    if not hasattr(shell, "XPythonLoopRunner"):
        return  # xeus-python 0.18 or older: an interrupted poll in xeus ends its kernel
    try:
        signal.signal(signal.SIGINT, interrupt_running_cell)
    except (ValueError, OSError) as exc:  # not the main thread: leave xeus-python's own
        _note("xeus-python stays uninterruptible (%s)" % exc)


TOKEN_FLAG = "--server-access-token"


def token_through_stdin(listen, marker):
    """``debugpy.listen`` that starts its adapter with the access token on a pipe, not in argv.

    Only for the length of the call, ``subprocess.Popen`` is a subclass that, for the adapter's
    start alone (its environment carries ``marker``), takes ``--server-access-token TOKEN`` out
    of the arguments, tells the adapter's shim to read it from stdin, and writes it there.
    Any other process started meanwhile is started as usual.
    """
    import subprocess

    base = subprocess.Popen

    class AdapterPopen(base):
        def __init__(self, args, *rest, **kwargs):
            env, token = kwargs.get("env"), None
            if (isinstance(args, list) and TOKEN_FLAG in args[:-1] and isinstance(env, dict)
                    and env.get(ENV) == marker):
                at = args.index(TOKEN_FLAG)
                token, args = args[at + 1], args[:at] + args[at + 2:]
                env = dict(env)
                env[ENV] = json.dumps(dict(json.loads(marker), token_on_stdin=True))
                kwargs.update(env=env, stdin=subprocess.PIPE)
            super().__init__(args, *rest, **kwargs)
            if token is not None:
                try:
                    self.stdin.write(token.encode("ascii") + b"\n")
                except OSError:
                    pass  # the adapter died at once; debugpy reports that
                finally:
                    self.stdin.close()

    def private_listen(*args, **kwargs):
        subprocess.Popen = AdapterPopen
        try:
            return listen(*args, **kwargs)
        finally:
            subprocess.Popen = base

    return private_listen


def _read_token():
    chunks = []
    while True:
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("ascii", "replace").strip()


ADAPTER_PIDS = "adapters"  # in the kernel's directory: one file per debugpy adapter


def adapter(settings):
    """Inside debugpy's adapter: its client and server listeners accept only this user.

    The adapter daemonizes (setsid, fork) out of the kernel's process group, so the launcher's
    cleanup would miss it: each process it forks into names itself in the kernel's directory.
    Its access token, when the kernel sent it on stdin (``token_on_stdin``), goes back into
    ``sys.argv`` before debugpy parses it.
    """
    directory = os.path.join(settings["kernel_dir"], ADAPTER_PIDS)

    def record():
        try:
            os.makedirs(directory, 0o700, exist_ok=True)
            os.close(os.open(os.path.join(directory, str(os.getpid())), os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError:
            pass

    os.register_at_fork(after_in_child=record)
    if settings.get("token_on_stdin"):
        token = _read_token()  # the kernel wrote it and closed the pipe
        if token:
            sys.argv += [TOKEN_FLAG, token]  # the adapter parses sys.argv; /proc shows none of it

    def patch(sockets):
        sockets.create_server = owner_only(sockets.create_server)

    sys.meta_path.insert(0, _AfterImport({"debugpy.common.sockets": patch}))


def main():
    settings = _settings()
    if settings is None:
        return
    if settings.get("mode") == "adapter":
        _forget_self(settings)
        adapter(settings)
        return
    connection_file = os.path.join(settings.get("kernel_dir", ""), "kernel.json")
    if connection_file not in sys.argv:
        return  # a python run by setup lines, before the kernel: leave the shim for the kernel
    _forget_self(settings)
    Kernel(settings).install()


if __name__ == "sitecustomize":  # as the launcher installs it; importing it elsewhere does nothing
    main()
    _run_next_sitecustomize()
