"""The few real artifacts the fault suite mutates: tiny data, one trained run, its ONNX export and an
interrupted run with a resume state. Built once per test session and shared by every fault test
module (each test copies what it alters)."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

IMAGE_SIDE = 12
CLASSES = 4
N_TRAIN, N_TEST = 160, 40


def tiny_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` float32 (n, 12, 12) images in [0, 1] whose class is a bright horizontal band: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % CLASSES
    images = rng.random((n, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32) * np.float32(0.3)
    band = IMAGE_SIDE // CLASSES
    for index, label in enumerate(labels):
        images[index, label * band:(label + 1) * band, :] += np.float32(0.6)
    return np.clip(images, 0, 1), labels


def write_tiny_npz(path: Path, *, classes: list[str] | None = None, seed: int = 0) -> Path:
    """The suite's dataset (160 train, 40 test, 4 classes of 1x12x12) as an ``npz:`` file."""
    x_train, y_train = tiny_arrays(N_TRAIN, seed)
    x_test, y_test = tiny_arrays(N_TEST, seed + 1)
    arrays = dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    if classes is not None:
        arrays["classes"] = np.array(classes)
    np.savez(path, **arrays)
    return path


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


@contextmanager
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Artifacts:
    root: Path
    data: Path          # the tiny npz
    run: Path           # a finished run trained on it
    onnx: Path          # that run exported (inside a folder of its own, beside no run)
    interrupted: Path   # a run stopped after its first iteration, with a resume state

    @property
    def spec(self) -> str:
        return f"npz:{self.data}"


_built: dict[str, Artifacts] = {}


def shared_artifacts(tmp_path_factory) -> Artifacts:
    """Build the artifacts on first use in this session (about 5 s on one core), then reuse them."""
    if "artifacts" not in _built:
        _built["artifacts"] = _build(tmp_path_factory.mktemp("fault-artifacts"))
    return _built["artifacts"]


def _build(root: Path) -> Artifacts:
    import advcli

    from .contract import assert_succeeded, invoke

    with umask(0o022), one_thread():
        data = write_tiny_npz(root / "tiny.npz")
        spec = f"npz:{data}"
        common = dict(data=spec, epochs=1, batch_size=20, lr=0.05, device="cpu", precision="fp32")
        run, _ = advcli.train(out=root / "runs" / "good", **common)
        interrupted, result = advcli.train(out=root / "runs" / "interrupted", should_stop=lambda: True,
                                           **{**common, "epochs": 2})
        assert result.interrupted
        onnx = root / "exported" / "model.onnx"
        assert_succeeded(invoke("export", "--model", run, "--out", onnx, "--parity-samples", 8))
    return Artifacts(root=root, data=data, run=run, onnx=onnx, interrupted=interrupted)


def copy_run(source: Path, target: Path) -> Path:
    """A private copy of a run folder (metadata, weights, plots) to mutate."""
    shutil.copytree(source, target, symlinks=True)
    return target
