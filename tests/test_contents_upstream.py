"""jupyter_server's own contents tests (vendored in tests/jupyter_server_contents/: the REST
tests of test_api.py and the manager-level tests of test_manager.py) pass against
SFTPContentsManager over a real sshd.

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
# Each with its reason in tests/jupyter_server_contents/skips.py and README.md.
SKIPPED = {
    "test_api.py": ("test_delete_non_empty_dir", "test_regression_is_hidden"),
    "test_manager.py": ("test_delete_non_empty_folder[True-False-None]", "test_regression_is_hidden",
                        "test_created_timestamp"),
}


@pytest.mark.timeout(900)
def test_jupyter_servers_contents_tests_pass_against_sftp():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-p", "no:asyncio", "-rs",
         "-o", "asyncio_mode=strict", str(HERE / "jupyter_server_contents")],
        capture_output=True, text=True, cwd=HERE.parent, timeout=890,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    outcomes: dict[str, dict[str, list[str]]] = {}
    for file, test, outcome in re.findall(
            r"^\S*jupyter_server_contents/(\w+\.py)::(.+?) (PASSED|SKIPPED|FAILED|ERROR)\b", result.stdout, re.M):
        outcomes.setdefault(file, {}).setdefault(outcome, []).append(test)
    # Both files ran, and only the listed tests were skipped.
    assert len(outcomes.get("test_api.py", {}).get("PASSED", [])) >= 130, outcomes.get("test_api.py")
    assert len(outcomes.get("test_manager.py", {}).get("PASSED", [])) >= 15, outcomes.get("test_manager.py")
    for file, skipped in SKIPPED.items():
        assert sorted(outcomes[file].get("SKIPPED", [])) == sorted(skipped), result.stdout[-3000:]
