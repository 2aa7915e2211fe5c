"""A stand-in Jupyter server for the lease tests: starts a kernel, sets state, reports, waits.

Run as ``python lease_server.py KERNEL_NAME``; prints the provisioner info as one JSON line
once the kernel holds ``x = 'kept'``, then sleeps until it is killed.
"""

import json
import sys
import time

import jupyter_client
from jupyter_core.utils import run_sync

km = jupyter_client.KernelManager(kernel_name=sys.argv[1])
km.start_kernel()
client = km.client()
client.start_channels()
client.wait_for_ready(timeout=60)
client.execute_interactive("x = 'kept'", timeout=30)
info = run_sync(km.provisioner.get_provisioner_info)()
info["connection_info"] = dict(info["connection_info"], key=km.session.key.decode())
print(json.dumps(info), flush=True)
time.sleep(3600)
