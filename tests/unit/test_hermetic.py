"""The tests own their environment: variables from the developer's shell never reach them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_shell_setting_does_not_reach_the_tests(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os\n"
        "def test_sees_nothing():\n"
        "    assert not [k for k in os.environ if k.startswith(('MLJOBS_', 'AWS_', 'MLFLOW_'))]\n"
        "    os.environ['MLJOBS_MODEL'] = 'set-by-a-test'\n"
        "def test_sees_nothing_a_test_set():\n"
        "    assert 'MLJOBS_MODEL' not in os.environ\n"
    )
    env = {**os.environ, "MLJOBS_SIGNING_KEY": "00" * 32, "AWS_ENDPOINT_URL": "http://x", "MLFLOW_TRACKING_URI": "http://y"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.hermetic", str(probe)],
                            cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]
