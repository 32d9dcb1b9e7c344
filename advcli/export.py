"""ONNX export of a run, checked by onnx.checker and by logit parity under onnxruntime."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .data import load_dataset
from .errors import AdvcliError
from .runs import Run

DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4


@dataclass
class ExportResult:
    path: Path
    opset: int
    parity_samples: int
    max_abs_diff: float
    argmax_agreement: float

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.path), "opset": self.opset, "parity_samples": self.parity_samples,
                "max_abs_diff": self.max_abs_diff, "argmax_agreement": self.argmax_agreement}


def _onnx_metadata(run: Run) -> dict[str, str]:
    training = run.meta.get("training", {})
    return {
        "advcli.classes": json.dumps(run.classes),
        "advcli.input_shape": json.dumps(run.meta["input_shape"]),
        "advcli.input_range": json.dumps(run.meta.get("input_range", [0.0, 1.0])),
        "advcli.training_method": str(training.get("method", "none")),
        "advcli.training_eps": str(training.get("eps", 0.0)),
        "advcli.source_fingerprint": run.fingerprint,
        "advcli.source_run": str(run.path),
        "advcli.data": run.data_spec,
    }


def export_onnx(run: Run, out: Path | str, *, opset: int = DEFAULT_OPSET, parity_samples: int = 256) -> ExportResult:
    """Export `run` to ONNX at `out` (dynamic batch axis) and verify it; nothing is left at `out` on failure."""
    import onnx
    import onnxruntime as ort

    out = Path(out)
    if out.exists():
        raise AdvcliError(f"{out} already exists; choose another --out (results are never overwritten)")
    if not 7 <= opset <= 23:
        raise AdvcliError(f"--opset must be between 7 and 23, got {opset}")
    model = run.model.to("cpu").eval()
    sample = torch.zeros(1, *run.meta["input_shape"])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (sample,), str(tmp), input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
            )
        proto = onnx.load(str(tmp))
        for key, value in _onnx_metadata(run).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))

        dataset = load_dataset(run.data_spec)
        x = dataset.x_test[:parity_samples]
        with torch.no_grad():
            expected = model(x).numpy()
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        actual = session.run(None, {"input": x.numpy()})[0]
        max_diff = float(np.abs(actual - expected).max())
        agreement = float((actual.argmax(1) == expected.argmax(1)).mean())
        if not (max_diff <= PARITY_TOLERANCE and agreement == 1.0):
            raise AdvcliError(f"ONNX parity check failed: max |logit diff| {max_diff:.3g} "
                              f"(tolerance {PARITY_TOLERANCE}), argmax agreement {agreement:.4f}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, opset, len(x), max_diff, agreement)
