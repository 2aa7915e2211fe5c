"""jupyter_server's own contents REST tests (vendored in tests/jupyter_server_contents/) pass
against SFTPContentsManager over a real sshd.

They need pytest-jupyter's event loop, which this repo's pytest-asyncio would take over, so they
run in a pytest process of their own, without pytest-asyncio; this test starts it and reads
its verdict. The skips are listed, with reasons, in tests/jupyter_server_contents/README.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SKIPPED = ("test_copy_dir", "test_delete_non_empty_dir", "test_regression_is_hidden")


@pytest.mark.timeout(600)
def test_jupyter_servers_contents_api_tests_pass_against_sftp():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio", "-rs",
         "-o", "asyncio_mode=strict", str(HERE / "jupyter_server_contents")],
        capture_output=True, text=True, cwd=HERE.parent, timeout=590,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    skipped = int(m.group(1)) if (m := re.search(r"(\d+) skipped", summary)) else 0
    assert passed >= 130, summary
    assert skipped == len(SKIPPED), f"unexpected skips: {summary}\n{result.stdout[-3000:]}"
