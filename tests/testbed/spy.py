"""A neighbour on the login node, trying to read someone else's kernel.

Run as the second unix user with a Python that has pyzmq. For every TCP address and Unix
path given, it subscribes with ZMQ (as any iopub reader would) and also connects raw, then
prints, as JSON, whatever it received and every error it met.
"""

import json
import socket
import sys
import time

import zmq


def main() -> None:
    tcp, paths, duration = json.loads(sys.argv[1]), json.loads(sys.argv[2]), float(sys.argv[3])
    context = zmq.Context()
    poller = zmq.Poller()
    raw, errors, received = [], [], []
    endpoints = ["tcp://" + address for address in tcp] + ["ipc://" + path for path in paths]
    for endpoint in endpoints:
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(endpoint)
        poller.register(sub, zmq.POLLIN)
    for address in tcp:
        host, port = address.rsplit(":", 1)
        try:
            raw.append(socket.create_connection((host, int(port)), timeout=1))
        except OSError as exc:
            errors.append(f"{address}: {exc}")
    for path in paths:
        try:
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            raw.append(sock)
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    for sock in raw:
        sock.setblocking(False)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        for sock, _ in poller.poll(100):
            received.append(b"".join(sock.recv_multipart()).decode("utf-8", "replace"))
        for sock in raw:
            try:
                data = sock.recv(65536)
                if data:
                    received.append(data.decode("utf-8", "replace"))
            except (BlockingIOError, OSError):
                pass
    print(json.dumps({"received": "".join(received), "errors": errors, "raw_connected": len(raw)}))
    context.destroy(linger=0)


if __name__ == "__main__":
    main()
