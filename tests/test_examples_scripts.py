"""The real-data example scripts (examples/digits.py, dynamics.py, spectrum.py) run end to end.

Each runs in a subprocess with TPCOMPILE_EXAMPLE_QUICK=1 (subsets, small widths, few steps; well
under 30 s each) and writes its PNG, if any, to a temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

CASES = {
    "digits.py": (False, ["digits: 200 train", "breast cancer:", "NTK kernel, t = ∞", "finite,"]),
    "dynamics.py": (True, ["| GD step |", "diabetes, test R²", "NTKRegressor, t = ∞"]),
    "spectrum.py": (True, ["NTK condition number", "| depth |", "ReLU ResNet"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CASES))
def test_example_script_runs_quickly(script: str, tmp_path: Path) -> None:
    writes_png, expected = CASES[script]
    out = tmp_path / (Path(script).stem + ".png")
    cmd = [sys.executable, str(EXAMPLES / script)] + (["--out", str(out)] if writes_png else [])
    env = {**os.environ, "TPCOMPILE_EXAMPLE_QUICK": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stdout, f"{text!r} not in the output of {script}:\n{proc.stdout}"
    table_rows = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert len(table_rows) >= 4, proc.stdout
    if writes_png:
        assert out.stat().st_size > 10_000
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
