"""What a report is made from, checked before anything is drawn, and how to read it from disk.

A report may only show what was measured, about the model it names: results for other weights
are refused, and malformed figures raise :class:`AdvcliError` rather than being drawn.

Verification results (``ReportInputs.verification``) are a dict of this shape::

    {"method": "ibp",             # what proved the bounds
     "norm": "linf",              # threat model of the radii below
     "samples": 200,              # samples the verifier was run on
     "seconds": 12.5,             # its wall time
     "model_fingerprint": "sha256:...",   # optional: must match model.json's weights
     "results": [                 # one row per radius, any order
        {"eps": 0.05,
         "certified_accuracy": 0.81,  # share of all samples proven correctly classified in the ball
         "verified": 0.84,            # of the attempted (clean-correct) samples: proven robust,
         "violated": 0.06,            #   a counterexample found,
         "unproven": 0.10,            #   neither; the three add up to 1
         "robust_accuracy": 0.90}]}   # optional: the verifier's own attacks on the same samples

An ``advcli verify --report`` document is read into this shape (:func:`from_verify_report`).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..errors import AdvcliError

EXAMPLE_KEYS = ("originals", "adversarials", "labels", "clean_predictions", "adversarial_predictions")
SHARE_TOLERANCE = 1e-6


@dataclass
class ReportInputs:
    """A run's ``model.json`` (dict) and history rows, and optionally an evaluation
    (``EvalReport.to_dict()``), verification results and the arrays of an ``advcli attack`` .npz."""

    model: Mapping[str, Any]
    history: Sequence[Mapping[str, Any]] = ()
    evaluation: Optional[Mapping[str, Any]] = None
    verification: Optional[Mapping[str, Any]] = None
    examples: Optional[Mapping[str, Any]] = None
    class_names: Optional[Sequence[str]] = None  # default: the model's classes
    title: Optional[str] = None
    exported: Optional[Mapping[str, str]] = None  # the ONNX file reported on: its "path" and "fingerprint"

    @property
    def classes(self) -> list[str]:
        names = self.class_names if self.class_names is not None else self.model.get("classes", [])
        return [str(name) for name in names]


@dataclass
class Examples:
    """Checked adversarial examples: float images in [0, 1] (N, C, H, W) and int64 labels."""

    originals: np.ndarray
    adversarials: np.ndarray
    labels: np.ndarray
    clean_predictions: np.ndarray
    adversarial_predictions: np.ndarray
    targets: Optional[np.ndarray]  # -1: not targeted
    indices: np.ndarray  # each example's index in its split (its row number when not recorded)
    meta: dict[str, Any]


def _fingerprint(model: Mapping[str, Any]) -> Optional[str]:
    weights = model.get("weights")
    return weights.get("sha256") if isinstance(weights, Mapping) else None


def check_model(model: Mapping[str, Any]) -> None:
    if not isinstance(model, Mapping):
        raise AdvcliError(f"report: model.json must be a JSON object, got {type(model).__name__}")
    for key in ("architecture", "input_shape", "classes"):
        if key not in model:
            raise AdvcliError(f"report: model.json lacks {key!r}; pass a run's model.json")


def consistency_notes(inputs: ReportInputs) -> list[str]:
    """Refuse results that belong to other weights; notes for links that cannot be checked here."""
    weights = _fingerprint(inputs.model)
    notes: list[str] = []
    claimed = [("evaluation", inputs.evaluation.get("model_fingerprint") if inputs.evaluation else None,
                inputs.evaluation.get("backend", "torch") if inputs.evaluation else "torch")]
    if inputs.verification is not None:
        claimed.append(("verification", inputs.verification.get("model_fingerprint"), "torch"))
    if inputs.examples is not None:
        claimed.append(("adversarial examples", example_meta(inputs.examples).get("model_fingerprint"), "torch"))
    exported = inputs.exported
    for what, fingerprint, backend in claimed:
        if fingerprint is None or weights is None:
            continue
        if backend != "torch" and exported is not None:
            if fingerprint != exported.get("fingerprint"):
                raise AdvcliError(f"report: the {what} is of another exported file ({fingerprint}), not "
                                  f"{exported.get('path')} ({exported.get('fingerprint')})")
            notes.append(f"The {what} ran on the exported file under {backend}; its metadata names these "
                         "weights as its source, and they were found with that fingerprint.")
        elif backend != "torch":
            notes.append(f"The {what} ran on an exported {backend} model ({fingerprint}); that it was exported "
                         "from these weights is not checked here.")
        elif fingerprint != weights:
            raise AdvcliError(f"report: the {what} is of other weights ({fingerprint}), not this run's ({weights})")
    return notes


def _share(row: Mapping[str, Any], key: str, where: str) -> float:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise AdvcliError(f"report: verification {where}: {key} must be a share in [0, 1], got {value!r}")
    return float(value)


def from_verify_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """An ``advcli verify --report`` document in the shape above: its curve's counts over all samples
    become shares of the attempted (clean-correct) ones, the clean errors taken out of the violated."""
    rows = []
    for point in report.get("curve") or ():
        if not isinstance(point, Mapping):
            raise AdvcliError(f"report: verification curve point {point!r} is not a dict")
        counts = {key: point.get(key) for key in ("verified", "violated", "unproven")}
        clean_errors = (point.get("violated_by") or {}).get("clean", 0)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (*counts.values(), clean_errors)):
            raise AdvcliError(f"report: verification curve point at eps {point.get('eps')!r}: counts must be "
                              "whole numbers >= 0")
        attempted = sum(counts.values()) - clean_errors
        if attempted < 0 or clean_errors > counts["violated"]:
            raise AdvcliError(f"report: verification curve point at eps {point.get('eps')!r}: more clean errors "
                              "than violations")
        counts["violated"] -= clean_errors
        rows.append({"eps": point.get("eps"), "certified_accuracy": point.get("certified_accuracy"),
                     "robust_accuracy": point.get("robust_accuracy"),
                     **{key: value / attempted if attempted else (1.0 if key == "unproven" else 0.0)
                        for key, value in counts.items()}})
    return {key: report.get(key) for key in ("method", "norm", "samples", "seconds", "model_fingerprint")
            if key in report} | {"results": rows}


def check_verification(verification: Mapping[str, Any]) -> dict[str, Any]:
    """The verification dict (shape in the module docstring, or an ``advcli verify`` report),
    checked, with its rows sorted by eps."""
    if not isinstance(verification, Mapping):
        raise AdvcliError("report: verification results must be a dict")
    if "results" not in verification and "curve" in verification:
        verification = from_verify_report(verification)
    for key, kinds in (("method", str), ("norm", str), ("samples", int), ("seconds", (int, float))):
        if not isinstance(verification.get(key), kinds) or isinstance(verification.get(key), bool):
            raise AdvcliError(f"report: verification lacks {key!r} (or it has the wrong type)")
    if verification["samples"] < 1 or verification["seconds"] < 0:
        raise AdvcliError("report: verification needs samples >= 1 and seconds >= 0")
    rows = verification.get("results")
    if not isinstance(rows, Sequence) or isinstance(rows, str) or not rows:
        raise AdvcliError("report: verification 'results' must be a non-empty list of rows, one per eps")
    checked = []
    for row in rows:
        eps = row.get("eps") if isinstance(row, Mapping) else None
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
            raise AdvcliError(f"report: verification row {row!r}: eps must be a number >= 0")
        where = f"at eps {eps:g}"
        shares = {key: _share(row, key, where) for key in ("certified_accuracy", "verified", "violated", "unproven")}
        total = shares["verified"] + shares["violated"] + shares["unproven"]
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise AdvcliError(f"report: verification {where}: verified + violated + unproven is {total:g}, not 1")
        if row.get("robust_accuracy") is not None:  # the verifier's own attacks, on the same samples
            shares["robust_accuracy"] = _share(row, "robust_accuracy", where)
        checked.append({"eps": float(eps), **shares})
    if len({row["eps"] for row in checked}) != len(checked):
        raise AdvcliError("report: verification has two rows for the same eps")
    return {**verification, "results": sorted(checked, key=lambda row: row["eps"])}


def example_meta(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON ``meta`` an ``advcli attack`` file carries, or {} when absent or unreadable."""
    raw = arrays.get("meta")
    if raw is None:
        return {}
    try:
        meta = json.loads(str(np.asarray(raw).item()))
    except (ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _labels(arrays: Mapping[str, Any], key: str, count: int, classes: int, *, allow_none: bool = False) -> np.ndarray:
    values = np.asarray(arrays[key])
    if values.shape != (count,) or values.dtype.kind not in "iu":
        raise AdvcliError(f"report: examples '{key}' must be {count} integers, got {values.dtype} {values.shape}")
    low = -1 if allow_none else 0
    if count and (values.min() < low or values.max() >= classes):
        raise AdvcliError(f"report: examples '{key}' span {values.min()}..{values.max()}, outside 0..{classes - 1}")
    return values.astype(np.int64)


def check_examples(arrays: Mapping[str, Any], num_classes: int) -> Examples:
    """The arrays of an ``advcli attack`` file, checked for shape, range and label bounds."""
    missing = [key for key in EXAMPLE_KEYS if key not in arrays]
    if missing:
        raise AdvcliError(f"report: examples lack {', '.join(missing)}")
    images = [np.asarray(arrays[key], dtype=np.float32) for key in ("originals", "adversarials")]
    if images[0].ndim != 4 or images[0].shape != images[1].shape or images[0].shape[1] not in (1, 3):
        raise AdvcliError(f"report: examples must be (N, C, H, W) images with C in 1 or 3, the same for "
                          f"originals and adversarials; got {images[0].shape} and {images[1].shape}")
    for key, values in zip(("originals", "adversarials"), images):
        if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
            raise AdvcliError(f"report: examples '{key}' must be finite pixels in [0, 1]")
    count = images[0].shape[0]
    labels = {key: _labels(arrays, key, count, num_classes) for key in EXAMPLE_KEYS[2:]}
    targets = _labels(arrays, "targets", count, num_classes, allow_none=True) if "targets" in arrays else None
    indices = np.asarray(arrays.get("indices", np.arange(count)))
    if indices.shape != (count,) or indices.dtype.kind not in "iu":
        raise AdvcliError(f"report: examples 'indices' must be {count} integers, got {indices.dtype} {indices.shape}")
    return Examples(images[0], images[1], labels["labels"], labels["clean_predictions"],
                    labels["adversarial_predictions"], targets, indices.astype(np.int64), example_meta(arrays))


def history_series(rows: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float], list[tuple[float, float, float]]]:
    """(iterations, losses, validation points) from history rows (dicts, or csv rows of strings)."""
    iterations, losses, validation = [], [], []
    for row in rows:
        step, loss = _number(row.get("iteration")), _number(row.get("loss"))
        if step is None or loss is None:
            continue
        iterations.append(step)
        losses.append(loss)
        clean, robust = _number(row.get("val_accuracy")), _number(row.get("val_robust_accuracy"))
        if clean is not None and robust is not None:
            validation.append((step, clean, robust))
    return iterations, losses, validation


def _number(value: Any) -> Optional[float]:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# Reading from disk -----------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as error:
        raise AdvcliError(f"{path}: cannot read the {what}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdvcliError(f"{path}: the {what} is not valid JSON ({error})") from None


def read_history_csv(path: Path | str) -> list[dict[str, str]]:
    """The rows of a run's ``history.csv`` (values stay strings; the report reads the numbers)."""
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError as error:
        raise AdvcliError(f"{path}: cannot read the training history: {error.strerror or error}") from None


def load_examples(path: Path | str) -> dict[str, np.ndarray]:
    """The arrays of an ``advcli attack`` .npz (no pickle: object arrays are refused)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as error:
        raise AdvcliError(f"{path}: cannot read adversarial examples: {error}") from None


def load_report_inputs(run: Path | str, *, evaluation: Optional[Path | str] = None,
                       verification: Optional[Path | str] = None, examples: Optional[Path | str] = None,
                       title: Optional[str] = None) -> ReportInputs:
    """Read a run folder's model.json and history.csv, and the given JSON / .npz files."""
    run = Path(run)
    history = run / "history.csv"
    return ReportInputs(
        model=_read_json(run / "model.json", "model description"),
        history=read_history_csv(history) if history.is_file() else [],
        evaluation=_read_json(Path(evaluation), "evaluation report") if evaluation is not None else None,
        verification=_read_json(Path(verification), "verification results") if verification is not None else None,
        examples=load_examples(examples) if examples is not None else None,
        title=title,
    )
