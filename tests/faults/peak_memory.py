"""Peak resident memory of refusing each crafted file of the fault suite, in fresh processes.

The suite measures the same cases in its fork server (whose figures err high); this runs each as a
fresh ``python -m advcli`` (through :mod:`faults.launcher`, so the figure is the command's own) and
prints one row per case, with evaluating the suite's tiny model as the baseline.

Usage, from the tests folder: ``PYTHONPATH=.. python -m faults.peak_memory`` (about 2 minutes).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .artifacts import _build
from .bombs import DATA_BOMBS
from .checkpoints import edit_meta
from .processes import Job, run_module

MiB = 1 << 20


def main() -> None:
    root = Path(tempfile.mkdtemp())
    try:
        (root / "artifacts").mkdir()
        artifacts = _build(root / "artifacts")
        rows = []
        for name, generate in DATA_BOMBS.items():
            spec = generate(root / name / "data")
            argv = ["train", "--data", spec, "--epochs", 1, "--out", root / name / "never", "--device", "cpu"]
            rows.append((name, run_module(Job(argv, cwd=root / name))))
        for side in (2000, 30000):
            run = shutil.copytree(artifacts.run, root / f"input-shape-{side}")
            edit_meta(run, "input_shape", [1, side, side])
            argv = ["eval", "--model", run, "--samples", 4, "--iters", 1, "--sanity-samples", 0]
            rows.append((f"model.json input_shape 1x{side}x{side}", run_module(Job(argv, cwd=root))))
        argv = ["eval", "--model", artifacts.run, "--samples", 4, "--iters", 1, "--sanity-samples", 0]
        rows.append(("baseline: evaluating the tiny model", run_module(Job(argv, cwd=root))))
        print(f"{'case':44} {'exit':>4} {'peak RSS':>10}")
        for name, outcome in rows:
            print(f"{name:44} {outcome.code!s:>4} {outcome.peak_rss / MiB:>6.0f} MiB")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
