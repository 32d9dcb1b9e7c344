"""ONNX export of a run, checked by onnx.checker and by logit parity under onnxruntime.

The exported file is what gets deployed, so it is only kept when onnxruntime reproduces the
checkpoint's logits on real inputs from the model's own data; the parity figures are saved beside
it (``<file>.parity.json``). Any failure leaves nothing at the output path.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .._version import __version__
from ..data.selection import select_samples
from ..data.spec import load_dataset
from ..errors import AdvcliError
from ..io.atomic import atomic_path, write_json_atomic
from ..io.destinations import check_destination
from ..io.provenance import file_sha256, package_versions, utc_now
from ..io.runs import Run
from ..runtime.backends.onnxruntime import create_session, ort_errors, ort_message

DEFAULT_OPSET = 18
MIN_OPSET, MAX_OPSET = 7, 23  # what torch's exporter and onnxruntime both support
PARITY_TOLERANCE = 1e-4
PARITY_SAMPLES = 256
PARITY_SUFFIX = ".parity.json"
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ParityError(AdvcliError):
    """onnxruntime does not reproduce the checkpoint's logits: the exported graph is not the model."""


@dataclass
class ParityResult:
    """How closely onnxruntime's logits match torch's on the same inputs."""

    samples: int
    batch_sizes: list[int]
    max_abs_diff: float
    argmax_agreement: float
    tolerance: float
    execution_providers: list[str]

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_agreement == 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "batch_sizes": self.batch_sizes, "max_abs_diff": self.max_abs_diff,
                "argmax_agreement": self.argmax_agreement, "tolerance": self.tolerance, "passed": self.passed,
                "execution_providers": self.execution_providers}


@dataclass
class ExportResult:
    path: Path
    opset: int
    sha256: str
    parity: ParityResult
    parity_file: Path
    metadata: dict[str, str]

    @property
    def parity_samples(self) -> int:
        return self.parity.samples

    @property
    def max_abs_diff(self) -> float:
        return self.parity.max_abs_diff

    @property
    def argmax_agreement(self) -> float:
        return self.parity.argmax_agreement

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.path), "opset": self.opset, "sha256": self.sha256,
                "parity_samples": self.parity.samples, "max_abs_diff": self.parity.max_abs_diff,
                "argmax_agreement": self.parity.argmax_agreement, "parity": self.parity.to_dict(),
                "parity_file": str(self.parity_file), "metadata": self.metadata}


def onnx_metadata(run: Run) -> dict[str, str]:
    """What advcli stores in an exported file: enough to use, evaluate and trace it back."""
    training = run.meta.get("training", {})
    return {
        "advcli.version": __version__,
        "advcli.architecture": str(run.meta.get("architecture", "")),
        "advcli.classes": json.dumps(run.classes),
        "advcli.input_shape": json.dumps(run.meta["input_shape"]),
        "advcli.input_range": json.dumps(run.meta.get("input_range", [0.0, 1.0])),
        "advcli.training_method": str(training.get("method", "none")),
        "advcli.training_eps": str(training.get("eps", 0.0)),
        "advcli.source_fingerprint": run.fingerprint,
        "advcli.source_run": str(run.path.absolute()),  # found again from any working folder
        "advcli.data": run.data_spec,
        "advcli.data_fingerprint": str(run.meta.get("data", {}).get("fingerprint", "")),
    }


def check_parity(
    path: Path | str, model: nn.Module, x: torch.Tensor, *, tolerance: float = PARITY_TOLERANCE
) -> ParityResult:
    """Compare onnxruntime's logits for the file at `path` with `model`'s on `x` (CPU, float32).

    Runs the whole batch and the first input alone, which also exercises the dynamic batch axis.
    """
    model = copy.deepcopy(model).cpu().eval()
    session, _ = create_session(path, "cpu")
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    x = x.detach().cpu().float()
    batches = [x, x[:1]]
    with torch.no_grad():
        expected = [model(batch).numpy() for batch in batches]
    try:
        actual = [session.run([output_name], {input_name: batch.numpy()})[0] for batch in batches]
    except ort_errors() as error:
        raise ParityError(f"{path}: onnxruntime cannot run the exported graph ({ort_message(error)})") from None
    diffs = [float(np.abs(a - e).max()) if a.shape == e.shape else float("inf") for a, e in zip(actual, expected)]
    agreement = float((actual[0].argmax(1) == expected[0].argmax(1)).mean()) if actual[0].shape == expected[0].shape else 0.0
    return ParityResult(samples=len(x), batch_sizes=[len(batch) for batch in batches], max_abs_diff=max(diffs),
                        argmax_agreement=agreement, tolerance=tolerance, execution_providers=session.get_providers())


def parity_file_of(path: Path) -> Path:
    return path.with_name(path.name + PARITY_SUFFIX)


def export_onnx(
    run: Run,
    out: Path | str,
    *,
    opset: int = DEFAULT_OPSET,
    parity_samples: int = PARITY_SAMPLES,
    postprocess: Optional[Callable[[Any], None]] = None,
) -> ExportResult:
    """Export `run` to ONNX at `out` (eval mode, dynamic batch axis) and verify it.

    The graph gets advcli's metadata (:func:`onnx_metadata`), passes ``onnx.checker`` (full check)
    and must reproduce the checkpoint's logits under onnxruntime on `parity_samples` test inputs
    of the run's data (:data:`PARITY_TOLERANCE`, same argmax everywhere). `postprocess`, when given,
    may rewrite the ``onnx.ModelProto`` in place before these checks (e.g. graph optimisations); the
    checks guard against any change of behaviour it brings. Nothing is left at `out` on failure.
    """
    out = Path(out)
    parity_path = parity_file_of(out)
    for target in (out, parity_path):
        check_destination(target, param="out")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise AdvcliError(f"`opset` must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}", param="opset")
    if not isinstance(parity_samples, int) or parity_samples < 1:
        raise AdvcliError(f"`parity_samples` must be >= 1, got {parity_samples}", param="parity_samples")
    dataset = load_dataset(run.data_spec)
    x_test, _ = dataset.split("test")
    x = x_test[select_samples(len(x_test), parity_samples, seed=0)]
    model = copy.deepcopy(run.model).cpu().eval()
    metadata = onnx_metadata(run)
    written = False
    try:
        with atomic_path(out, suffix=".onnx") as tmp:
            digest, parity = _export_checked(model, x, tmp, out, opset, metadata, run, postprocess)
            write_json_atomic(parity_path, {
                "onnx": str(out), "onnx_sha256": digest, "opset": opset, "source_run": str(run.path.absolute()),
                "source_fingerprint": run.fingerprint, "data": dataset.spec, "data_fingerprint": dataset.fingerprint,
                "split": "test", **parity.to_dict(), "versions": package_versions(), "created": utc_now(),
            })
            written = True
    except BaseException:
        if written:
            parity_path.unlink(missing_ok=True)
        raise
    return ExportResult(out, opset, digest, parity, parity_path, metadata)


def _export_checked(model: nn.Module, x: torch.Tensor, tmp: Path, out: Path, opset: int, metadata: dict[str, str],
                    run: Run, postprocess: Optional[Callable[[Any], None]]) -> tuple[str, ParityResult]:
    """Export `model` to `tmp` (on its way to `out`), add `metadata`, run ``onnx.checker`` and the parity
    check; returns the file's checksum and the parity figures."""
    import onnx
    from google.protobuf.message import DecodeError

    # The TorchScript exporter is deprecated and says so on every call; its graph is what we check.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x[:1],), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=opset, dynamo=False,
        )
    proto = onnx.load(str(tmp))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = f"advcli {run.meta.get('architecture', 'model')} exported from {run.path.absolute()}"
    if postprocess is not None:
        postprocess(proto)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, DecodeError) as error:
        raise AdvcliError(f"exported graph failed onnx.checker: {' '.join(str(error).split())[:300]}") from None
    onnx.save(proto, str(tmp))
    parity = check_parity(tmp, model, x)
    if not parity.passed:
        raise ParityError(f"ONNX parity check failed: max |logit diff| {parity.max_abs_diff:.3g} "
                          f"(tolerance {parity.tolerance:g}), argmax agreement {parity.argmax_agreement:.4f}; "
                          f"nothing was written to {out}")
    return file_sha256(tmp), parity
