"""``jupyter hpc keyservice``: an SSH certificate authority that speaks sshproxy's API.

Users trade password + one-time code for a short-lived SSH certificate signed by a CA kept in
the state directory; login nodes trust that CA instead of anyone's public key. `adduser`
adds a user and prints the TOTP provisioning URI for their authenticator app.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys

from .demo import _port


def _seconds(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a lifetime: give a positive number of seconds")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "keyservice",
        help="run an sshproxy-compatible SSH certificate authority (password + one-time code)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--state-dir", metavar="DIR",
                        help="(required) directory for the CA key, users, lockouts and audit log (made 0700)")
    parser.add_argument("--port", type=_port, default=0, help="port to listen on (default: any free port, printed)")
    parser.add_argument("--socket", default="", metavar="PATH",
                        help="listen on this Unix socket (mode 0600) instead of a port: no other user of the "
                             "host can connect, or bind it first")
    parser.add_argument("--socket-group", default="", metavar="GROUP",
                        help="give the socket this group and mode 0660 (the hub's group, when it runs as another user)")
    parser.add_argument("--ip", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; others only with --certfile/--keyfile)")
    parser.add_argument("--lifetime", type=_seconds, default=None, metavar="SECONDS",
                        help="certificate lifetime for scopes that set none (default 43200, 12 h)")
    parser.add_argument("--scope", action="append", default=[], metavar="NAME",
                        help="a scope to sign for, with its own CA key (repeat for more; sshproxy's clients ask "
                             "for 'default'); or list scopes in DIR/scopes.json")
    parser.add_argument("--trusted-proxy", action="append", default=[], metavar="ADDRESS",
                        help="an address (or network) whose X-Forwarded-For names the client, e.g. the hub's; "
                             "lockouts then apply per browser address (repeat for more)")
    parser.add_argument("--certfile", default="", help="TLS certificate (PEM) to serve HTTPS")
    parser.add_argument("--keyfile", default="", help="TLS private key (PEM) for --certfile")
    parser.add_argument("--debug", action="store_true", help="show debug messages")
    parser.set_defaults(func=run)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    adduser = commands.add_parser(
        "adduser", help="add a user; prints the otpauth:// URI for their authenticator app",
        description="Add a user (password prompted, or read from stdin) and print their TOTP provisioning URI.",
    )
    adduser.add_argument("name", help="user name: also the certificate's principal, i.e. the cluster account")
    adduser.add_argument("--state-dir", required=True, metavar="DIR", help="the key service's state directory")
    adduser.add_argument("--password-stdin", action="store_true",
                         help="read the password from the first line of stdin instead of prompting")
    adduser.set_defaults(func=run_adduser)
    return parser


def _print_qr(uri: str) -> None:
    """A QR code on the terminal, if segno is installed and stderr is a terminal."""
    if not sys.stderr.isatty():
        return
    try:
        import segno
    except ImportError:
        return
    segno.make(uri, error="m").terminal(out=sys.stderr, compact=True)


def run_adduser(args: argparse.Namespace) -> int:
    from ..keyservice import KeyServiceError, UserStore

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {args.name}: ")
        if getpass.getpass("Again: ") != password:
            print("jupyter hpc keyservice adduser: the passwords differ; nothing changed.", file=sys.stderr)
            return 1
    try:
        store = UserStore(args.state_dir)
        store.add_user(args.name, password)
        uri = store.provisioning_uri(args.name)
    except KeyServiceError as error:
        print(f"jupyter hpc keyservice adduser: {error}", file=sys.stderr)
        return 1
    print(uri, flush=True)
    _print_qr(uri)
    return 0


def run(args: argparse.Namespace) -> int:
    import asyncio

    from ..keyservice import KeyService, KeyServiceError

    if not args.state_dir:
        print("jupyter hpc keyservice: give --state-dir DIR (the CA key, users and audit log live there).",
              file=sys.stderr)
        return 2
    log = logging.getLogger("jupyter_hpc.keyservice")
    log.setLevel(logging.DEBUG if args.debug else logging.INFO)
    settings = dict(state_dir=args.state_dir, ip=args.ip, port=args.port, certfile=args.certfile, keyfile=args.keyfile,
                    scopes={name: {} for name in args.scope}, trusted_proxies=args.trusted_proxy,
                    unix_socket=args.socket, unix_socket_group=args.socket_group,
                    unix_socket_mode=0o660 if args.socket_group else 0o600)
    if args.lifetime is not None:
        settings["lifetime"] = args.lifetime

    async def serve() -> None:
        service = KeyService(log=log, **settings)
        await service.start()
        print(f"jupyter-hpc keyservice listening on {service.url}", flush=True)
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        try:
            await stopping.wait()
        finally:
            await service.stop()

    try:
        asyncio.run(serve())
    except KeyServiceError as error:
        print(f"jupyter hpc keyservice: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
