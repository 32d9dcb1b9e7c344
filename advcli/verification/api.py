"""Formal verification as the library offers it: per-sample verdicts, certified accuracy beside clean
accuracy and the attacks' robust accuracy, curves over eps, per-class figures and CI gates.

Certified accuracy is the share of samples proved robust (every margin lower bound positive over
the whole ball); the attacks' robust accuracy is the share no counterexample was found for. The
truth lies between the two; the gap is the unproven share, reported so that it stays visible.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..data.dataset import Dataset
from ..data.selection import select_samples
from ..data.spec import load_dataset
from ..errors import AdvcliError
from ..evaluation.api import check_fits_data, check_plot_path
from ..io.runs import DEFAULT_RUNS_DIR, resolve_run_path
from ..runtime.backends import LoadRequest
from ..runtime.classifier import Classifier
from ..runtime.device import resolve_device
from ..runtime.loading import detect_backend, load_classifier
from ..runtime.precision import resolve_precision
from .config import VerifyConfig
from .onnx_files import verifiable
from .report import ClassRow, RadiusResult, VerifyReport
from .verdicts import CLEAN_ERROR, NOT_VIOLATED, Verdict, VerificationResult, verify_radii

Progress = Callable[[str, int, int], None]

VERIFIABLE_BACKENDS = ("torch", "onnxruntime")


def configured(config: Optional[VerifyConfig], overrides: dict[str, Any]) -> VerifyConfig:
    """`config` (default: the defaults) with flat `overrides` applied, validated."""
    config = (config or VerifyConfig()).with_flat(**overrides)
    config.validate()
    return config


def _radius_result(result: VerificationResult, labels: torch.Tensor, attack_names: list[str]) -> RadiusResult:
    counts = result.counts()
    by = torch.bincount(result.violated_by[result.violated_by != NOT_VIOLATED], minlength=1 + len(attack_names))
    names = ["clean", *attack_names]
    return RadiusResult(
        eps=result.eps, verified=counts["verified"], violated=counts["violated"], unproven=counts["unproven"],
        violated_by={name: int(by[position]) for position, name in enumerate(names)},
        recomputed=int(result.recomputed.sum()), attack_seconds=result.attack_seconds,
        bound_seconds=result.bound_seconds, verdicts=[Verdict(int(v)).name.lower() for v in result.verdicts],
        worst_margins=result.worst_margin(labels).tolist(),
    )


def _share(mask: torch.Tensor) -> Optional[float]:
    return float(mask.float().mean()) if mask.numel() else None


def _per_class(y: torch.Tensor, classes: list[str], clean: torch.Tensor, results: list[VerificationResult]
               ) -> list[ClassRow]:
    rows = []
    for label, name in enumerate(classes):
        mine = y == label
        rows.append(ClassRow(label, name, int(mine.sum()), _share(clean[mine]),
                             [_share(result.verified[mine]) for result in results],
                             [_share(~result.violated[mine]) for result in results]))
    return rows


def _failures(config: VerifyConfig, clean_accuracy: float, certified_accuracy: float) -> list[str]:
    gate, failures = config.gate, []
    if gate.min_accuracy is not None and clean_accuracy < gate.min_accuracy:
        failures.append(f"clean accuracy {clean_accuracy:.4f} < required {gate.min_accuracy}")
    if gate.min_certified_accuracy is not None and certified_accuracy < gate.min_certified_accuracy:
        failures.append(f"certified accuracy {certified_accuracy:.4f} < required {gate.min_certified_accuracy}"
                        f" at eps {config.eps_values()[-1]:g}")
    return failures


def verify_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Optional[VerifyConfig] = None,
    *,
    classes: Optional[list[str]] = None,
    indices: Optional[torch.Tensor] = None,
    model_name: str = "(in memory)",
    model_fingerprint: Optional[str] = None,
    data_name: str = "(in memory)",
    data_fingerprint: Optional[str] = None,
    judge: Optional[nn.Module] = None,
    on_progress: Optional[Progress] = None,
    **overrides: Any,
) -> VerifyReport:
    """Verdicts, certified and attacked accuracy at every radius (and per class) of any supported
    model (a torch module, or a torch.fx GraphModule of standard layers) on tensors `x` (pixels in
    [0, 1]) and `y`. `indices` name the samples in their split (default 0, 1, ...); `judge`
    (default: `model`) decides predictions and counterexamples. `config.model`, `config.data`,
    `config.split`, `config.samples` and `config.contract` are not used here."""
    config = configured(config, overrides)
    started = time.perf_counter()
    if len(x) == 0:
        raise AdvcliError("no samples to verify")
    results = verify_radii(model, x, y, config, judge=judge, on_progress=on_progress)
    y = y.detach().cpu().to(torch.long)
    num_classes = results[0].margin_lower.shape[1]
    names = list(classes) if classes is not None else [str(index) for index in range(num_classes)]
    if len(names) != num_classes:
        raise AdvcliError(f"the model has {num_classes} outputs but there are {len(names)} class names")
    clean = results[0].violated_by != CLEAN_ERROR
    largest = config.eps_values()[-1]
    attacks = config.resolved_attacks(largest) if largest > 0 else []
    attack_names = list(dict.fromkeys(config.falsification.attacks))
    curve = [_radius_result(result, y, attack_names) for result in results]
    clean_accuracy = int(clean.sum()) / len(clean)
    parameter = next(model.parameters(), None)
    return VerifyReport(
        model=model_name, model_fingerprint=model_fingerprint, data=data_name, data_fingerprint=data_fingerprint,
        split=config.sampling.split, indices=(indices if indices is not None else torch.arange(len(y))).tolist(),
        labels=y.tolist(), device=str(parameter.device if parameter is not None else "cpu"),
        precision=resolve_precision(config.runtime.precision, parameter.device if parameter is not None else "cpu"),
        clean_accuracy=clean_accuracy, curve=curve, attacks=attacks,
        failures=_failures(config, clean_accuracy, curve[-1].certified_accuracy), config=config,
        seconds=time.perf_counter() - started, num_classes=num_classes,
        per_class=_per_class(y, names, clean, results) if config.per_class else None,
    )


def load_verifiable(config: VerifyConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR) -> Classifier:
    """The model to verify (the newest run by default): a run folder, or an ONNX file loaded under
    `config.contract`; any other kind of file is refused before it is loaded."""
    path, _ = resolve_run_path(config.model, runs_dir)
    backend = detect_backend(path)
    if backend not in VERIFIABLE_BACKENDS:
        raise AdvcliError(f"`model` {path} is a {backend} file; verification takes run folders and ONNX files "
                          "(export the model to ONNX)", param="model")
    request = LoadRequest(device=config.runtime.device, contract=config.contract)
    return load_classifier(path, backend=backend, runs_dir=runs_dir, request=request)[0]


def verify(
    config: Optional[VerifyConfig] = None,
    *,
    classifier: Optional[Classifier] = None,
    dataset: Optional[Dataset] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    on_progress: Optional[Progress] = None,
    **overrides: Any,
) -> VerifyReport:
    """Formal verification of a run (the newest under `runs_dir` by default) on its data's test split.

    ``advcli.verify(eps=0.1)`` gives per-sample verdicts and certified accuracy by CROWN;
    ``advcli.verify(eps=(0.01, 0.05, 0.1), method="ibp", per_class=True)`` a curve by IBP;
    ``advcli.verify(model="model.onnx", eps=0.1)`` an ONNX file through its conversion to torch
    (admitted by the parity gate on the samples verified; onnxruntime on the file judges, see
    :mod:`advcli.verification.onnx_files`). `classifier` passes a model already loaded (torch
    weights or an ONNX file). `on_progress(stage, done, total)` is called after every batch.
    """
    config = configured(config, overrides)
    classifier = classifier if classifier is not None else load_verifiable(config, runs_dir)
    if classifier.model is None and classifier.white_box is None:
        raise AdvcliError(f"{classifier.path} gives outputs only; verification needs its weights", param="model")
    if dataset is None:
        spec = config.data or classifier.data_spec
        if spec is None:
            raise AdvcliError(f"{classifier.path} does not name its data; pass `data`", param="data")
        dataset = load_dataset(spec)
    check_fits_data(classifier, dataset)
    x_all, y_all = dataset.split(config.sampling.split)
    picks = select_samples(len(x_all), config.sampling.samples, config.sampling.seed)
    if len(picks) == 0:
        raise AdvcliError(f"data {dataset.spec} has no {config.sampling.split} samples")
    x, y = x_all[picks], y_all[picks]
    target = verifiable(classifier, x, resolve_device(config.runtime.device))
    report = verify_model(target.model, x, y, config, classes=list(config.contract.class_names or dataset.classes),
                          indices=picks, model_name=str(classifier.path), model_fingerprint=classifier.fingerprint,
                          data_name=dataset.spec, data_fingerprint=dataset.fingerprint, judge=target.judge,
                          on_progress=on_progress)
    report.notes = list(dict.fromkeys(target.notes))
    report.warnings = list(dict.fromkeys(classifier.warnings + target.warnings))
    report.conversion = target.conversion
    return report


def save_certified_plot(report: VerifyReport, path: Path | str) -> Path:
    """Write certified accuracy and the attacks' robust accuracy against eps as a PNG, atomically."""
    from ..io.plots import save_robustness_curve

    path = Path(path)
    check_plot_path(path)
    eps = [point.eps for point in report.curve]
    attacks = ", ".join(report.config.falsification.attacks) or "no attack"
    series = {f"certified ({report.config.bounds.method})": [point.certified_accuracy for point in report.curve],
              f"attacked ({attacks})": [point.robust_accuracy for point in report.curve]}
    title = f"{Path(report.model).name or report.model}: certified and attacked accuracy (linf, {report.samples} samples)"
    save_robustness_curve(eps, series, path, title=title, clean_accuracy=report.clean_accuracy,
                          chance=1 / report.num_classes if report.num_classes else None, ylabel="Accuracy")
    return path
