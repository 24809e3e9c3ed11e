"""A predict job imports only what it uses: a LightGBM model scored from a file loads neither
scikit-learn, pandas nor scipy.stats (over a second of start-up)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mljobs import demo

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "shared"


def test_a_lightgbm_predict_job_imports_neither_sklearn_nor_pandas(demo_store, tmp_path):
    rows = tmp_path / "one.parquet"
    import pyarrow.parquet as pq

    pq.write_table(demo.scoring_table(rows=1), rows)
    # The job run as its container runs it (python -m), reporting the modules it ended with.
    report = ("import atexit, runpy, sys; sys.argv[0] = 'predict';"
              "atexit.register(lambda: print('MODULES', *sorted(n for n, m in sys.modules.items() if m), file=sys.stderr));"
              "runpy.run_module('mljobs.jobs.predict', run_name='__main__', alter_sys=True)")
    result = subprocess.run(
        [sys.executable, "-c", report, "--models-dir", str(demo_store / "models"),
         "--runs-dir", str(demo_store / "runs"), "--output", str(tmp_path / "out"), "--input", str(rows)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("MODULES ")]
    imported = set(line.split()[1:])
    assert "lightgbm" in imported and "mljobs.featurize" in imported
    assert not {m for m in imported if m.split(".")[0] in ("sklearn", "pandas")}
    assert "scipy.stats" not in imported
    assert list((tmp_path / "out").glob("model=demo/date=*/run=*/predictions.parquet"))
