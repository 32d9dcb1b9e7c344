"""benchmarks/gpu_check.sh, the one prepared run for a GPU machine: what can be checked without one
(its full dry run, the same steps tiny on the CPU, takes minutes: see benchmarks/README.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def test_the_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_an_unknown_argument_is_refused_before_any_work():
    result = subprocess.run(["bash", str(SCRIPT), "--fast"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "usage:" in result.stderr and result.stdout == ""
