"""The README opens with two commands, and the first one works exactly as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
URL = re.compile(r"^\s+(http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-f]+))\s*$")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block and text.index(block.group(0)) < text.index("\n", text.index("# jupyter-hpc")) + 3
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_gives_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("jupyter hpc demo")
    assert commands[1] == "bash tests/run"


def test_first_command_runs_the_demo_as_written():
    """Run the README's first line in a shell, open the API it prints, then Ctrl-C it."""
    demo = subprocess.Popen(
        ["bash", "-c", readme_commands()[0]], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, env={k: v for k, v in os.environ.items() if k != "DISPLAY"},
    )
    output = []
    try:
        deadline = time.monotonic() + 180
        match = None
        while match is None and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            output.append(line)
            match = URL.match(line)
        assert match, "".join(output)
        port, token = match.group(2), match.group(3)
        specs = requests.get(f"http://127.0.0.1:{port}/api/kernelspecs", params={"token": token}, timeout=10).json()
        names = {spec["spec"]["display_name"] for spec in specs["kernelspecs"].values()}
        assert "Cori (demo)" in names
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        status = demo.wait(60)
    assert status == 0, "".join(output) + demo.stdout.read()
