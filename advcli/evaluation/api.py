"""Robustness evaluation: clean accuracy and worst-case robust accuracy under chosen attacks.

A sample counts as robust only if it is classified correctly both clean and under every attack
(a clean error is non-robust). Every adversarial batch is re-checked and re-classified by the
engine (:mod:`advcli.evaluation.engine`) before it is counted. Sanity checks
(:mod:`advcli.evaluation.sanity`) come with every report.

The evaluated model may be a torch run, any ONNX file run by onnxruntime, a Python ``nn.Module``
or (trusted) a TorchScript or torch.export file (:mod:`advcli.runtime.backends`), read behind an
input contract (:class:`~advcli.runtime.onnx_import.contract.InputContract`). onnxruntime on an
ONNX file gives the clean predictions, re-classifies every adversarial example and answers
black-box queries; white-box attacks craft on the file's conversion to torch, or failing that on
a transfer source, or are replaced by Square (:mod:`advcli.evaluation.victims` decides and says so).

White-box attacks may take their gradients in reduced precision (see :mod:`advcli.runtime.autocast`):
reported accuracies are always float32 classifications.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..attacks.config import AttackConfig
from ..data.dataset import Dataset
from ..data.selection import select_samples
from ..data.spec import load_dataset
from ..errors import AdvcliError
from ..io.runs import DEFAULT_RUNS_DIR, Run, load_run, resolve_run_path
from ..runtime.backends import LoadRequest
from ..runtime.backends.torch import refuse_contract_for_runs, torch_classifier
from ..runtime.classifier import Classifier
from ..runtime.device import resolve_device
from ..runtime.execution import attack_mode
from ..runtime.loading import load_classifier
from ..runtime.user_module import module_classifier
from ..runtime.victim import Victim
from .config import EvalConfig
from .engine import Progress, RadiusOutcome, attack_over_radii, attack_samples, clean_predictions, share
from .report import ClassResult, CurvePoint, EvalReport
from .sanity import SanityInputs, run_sanity_checks
from .victims import Prepared, prepare

CHANCE_FACTOR = 1.5  # a foreign model's clean accuracy at most this times chance draws a contract warning
CHANCE_SAMPLES = 20  # ... on at least this many samples


def configured(config: Optional[EvalConfig], overrides: dict[str, Any]) -> EvalConfig:
    """`config` (default: the defaults) with flat `overrides` applied, validated."""
    config = (config or EvalConfig()).with_flat(**overrides)
    config.validate()
    return config


def _class_names(victim: Victim, x: torch.Tensor, classes: Optional[list[str]], config: EvalConfig
                 ) -> list[str]:
    with torch.no_grad():
        num_classes = int(victim.judge(x[:1].to(victim.device)).shape[1])
    names = list(classes) if classes is not None else [str(index) for index in range(num_classes)]
    if len(names) != num_classes:
        raise AdvcliError(f"the model has {num_classes} outputs but there are {len(names)} class names")
    target = config.attack_options.target
    if target is not None and target.isdigit() and int(target) >= num_classes:
        raise AdvcliError(f"`target` {target}: the model has classes 0 to {num_classes - 1}", param="target")
    return names


def _per_class(y: torch.Tensor, classes: list[str], clean: torch.Tensor, worst: list[torch.Tensor],
               names: list[str], robust_by_attack: list[torch.Tensor]) -> list[ClassResult]:
    """Per class: clean accuracy, worst-case accuracy at each radius, each attack's at the last."""
    rows = []
    for label, name in enumerate(classes):
        mine = y == label
        rows.append(ClassResult(
            index=label, name=name, samples=int(mine.sum()), clean_accuracy=share(clean[mine]),
            robust_accuracy=share(worst[-1][mine]),
            attacks={attack: share(robust[mine]) for attack, robust in zip(names, robust_by_attack)},
            curve=[share(mask[mine]) for mask in worst],
        ))
    return rows


def _failures(config: EvalConfig, clean_accuracy: float, robust_accuracy: float, eps_values: tuple[float, ...]
              ) -> list[str]:
    gate, failures = config.gate, []
    if gate.min_accuracy is not None and clean_accuracy < gate.min_accuracy:
        failures.append(f"clean accuracy {clean_accuracy:.4f} < required {gate.min_accuracy}")
    if gate.min_robust_accuracy is not None and robust_accuracy < gate.min_robust_accuracy:
        failures.append(f"robust accuracy {robust_accuracy:.4f} < required {gate.min_robust_accuracy}"
                        + (f" at eps {eps_values[-1]:g}" if len(eps_values) > 1 else ""))
    return failures


def _sanity(prepared: Prepared, y: torch.Tensor, clean: torch.Tensor, config: EvalConfig,
            attacks_by_eps: list[list[AttackConfig]], columns: list[list[RadiusOutcome]], num_classes: int,
            on_progress: Optional[Progress]) -> list:
    """The sanity checks, given what the evaluation measured and a way to measure more."""
    victim, x = prepared.victim, prepared.x

    def measure(attack: AttackConfig, indices: torch.Tensor) -> torch.Tensor:
        ok = clean[indices]
        robust = ok.clone()
        chosen = indices[ok]
        if attack.eps > 0 and chosen.numel():
            outcome = attack_samples(victim, x, y, attack, rows=chosen, num_classes=num_classes,
                                     batch_size=config.runtime.batch_size, seed=config.sampling.seed)
            robust[ok] = outcome.fooled_by == -1
        return robust

    subset = (select_samples(len(x), config.sanity_samples, config.sampling.seed) if config.sanity_samples
              else torch.empty(0, dtype=torch.long))
    return run_sanity_checks(SanityInputs(
        victim=victim, x=x, y=y, clean=clean, eps_values=config.eps_values(), attacks_by_eps=attacks_by_eps,
        members=[attack.members(num_classes) for attack in attacks_by_eps[-1]],
        masks=[[point.robust for point in column] for column in columns],
        breakers=[[point.broken_by for point in column] for column in columns],
        num_classes=num_classes, norm=config.threats.norm, clip=config.threats.clip, subset=subset,
        resolve=lambda eps: prepared.attacks(config, eps), measure=measure, batch_size=config.runtime.batch_size,
        seed=config.sampling.seed, on_progress=on_progress,
    ))


def evaluate_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Optional[EvalConfig] = None,
    *,
    classes: Optional[list[str]] = None,
    model_name: str = "(in memory)",
    model_fingerprint: Optional[str] = None,
    data_name: str = "(in memory)",
    data_fingerprint: Optional[str] = None,
    on_progress: Optional[Progress] = None,
    source: Optional[nn.Module] = None,
    transfer_from: Optional[str] = None,
    **overrides: Any,
) -> EvalReport:
    """Clean accuracy, robust accuracy at every radius, per-class figures and sanity checks of any
    model on tensors `x` (pixels in [0, 1]) and `y`, on the device of the model's parameters.
    `config.model`, `config.data`, `config.split` and `config.samples` are not used here, nor the
    input contract: `model` takes the pixels as they are and gives logits (see :func:`evaluate`
    for models with another contract).

    With `source` (a torch model, named `transfer_from` in the report), white-box attacks are
    crafted on it and judged by `model` (transfer); black-box attacks always query `model`, which
    may be outputs only (:class:`advcli.runtime.OutputsOnly`). White-box gradients run in
    `config.precision`, resolved on that device; `model` judges in float32 regardless."""
    config = configured(config, overrides)
    victim = Victim.of(model, precision=config.runtime.precision, source=source, transfer_from=transfer_from)
    mode = "transfer" if source is not None else "black-box" if victim.outputs_only else "native"
    prepared = Prepared(victim, x, {"mode": mode, "converted": False, "reason": None, "parity": None})
    return measure_robustness(prepared, y, config, classes=classes, model_name=model_name,
                              model_fingerprint=model_fingerprint, data_name=data_name,
                              data_fingerprint=data_fingerprint, on_progress=on_progress)


def measure_robustness(prepared: Prepared, y: torch.Tensor, config: EvalConfig, *, classes: Optional[list[str]],
                       model_name: str, model_fingerprint: Optional[str], data_name: str,
                       data_fingerprint: Optional[str], on_progress: Optional[Progress]) -> EvalReport:
    """The evaluation proper, on a prepared victim (:func:`advcli.evaluation.victims.prepare`)."""
    started = time.perf_counter()
    victim, x = prepared.victim, prepared.x
    if len(x) == 0:
        raise AdvcliError("no samples to evaluate")
    eps_values = config.eps_values()
    attacks_by_eps = [prepared.attacks(config, eps) for eps in eps_values]
    batch_size, seed = config.runtime.batch_size, config.sampling.seed
    with attack_mode(victim.judge):
        classes = _class_names(victim, x, classes, config)
        clean = clean_predictions(victim, x, batch_size=batch_size) == y
        columns = [attack_over_radii(victim, x, y, clean, [attacks[index] for attacks in attacks_by_eps],
                                     num_classes=len(classes), batch_size=batch_size, seed=seed,
                                     on_progress=on_progress)
                   for index in range(len(attacks_by_eps[0]))]
        worst = [torch.stack([column[e].robust for column in columns]).all(0) for e in range(len(eps_values))]
        curve = [CurvePoint(eps, float(worst[e].float().mean()), [column[e].result for column in columns])
                 for e, eps in enumerate(eps_values)]
        per_class = _per_class(y, classes, clean, worst, [attack.name for attack in attacks_by_eps[-1]],
                               [column[-1].robust for column in columns]) if config.per_class else None
        sanity = _sanity(prepared, y, clean, config, attacks_by_eps, columns, len(classes), on_progress)
    clean_accuracy, robust_accuracy = float(clean.float().mean()), curve[-1].robust_accuracy
    return EvalReport(
        model=model_name, model_fingerprint=model_fingerprint, data=data_name, data_fingerprint=data_fingerprint,
        split=config.sampling.split, samples=len(x), device=str(victim.device), clean_accuracy=clean_accuracy,
        attacks=curve[-1].attacks, robust_accuracy=robust_accuracy,
        failures=_failures(config, clean_accuracy, robust_accuracy, eps_values), config=config,
        seconds=time.perf_counter() - started, curve=curve, per_class=per_class, sanity=sanity,
        num_classes=len(classes), precision=victim.precision, white_box=prepared.white_box,
        notes=list(prepared.notes), warnings=list(prepared.warnings),
    )


def check_fits_data(classifier: Classifier, dataset: Dataset) -> None:
    """Refuse data whose image shape or class count the model was not made for."""
    if classifier.input_shape is not None and tuple(dataset.input_shape) != tuple(classifier.input_shape):
        expected, hint = tuple(classifier.input_shape), ""
        if classifier.contract is not None:
            other = "nhwc" if classifier.contract.layout == "nchw" else "nchw"
            # the file's own sizes, as the other layout would read them
            swapped = (expected[2], expected[0], expected[1]) if other == "nhwc" else (expected[1], expected[2], expected[0])
            hint = f"; with `layout` {other} it would fit" if swapped == tuple(dataset.input_shape) else ""
        raise AdvcliError(f"data {dataset.spec} has input shape {dataset.input_shape}, "
                          f"but the model expects {expected}{hint}", param="data")
    if classifier.classes is not None and dataset.num_classes != len(classifier.classes):
        raise AdvcliError(f"data {dataset.spec} has {dataset.num_classes} classes, the model {len(classifier.classes)}",
                          param="data")


def load_for_evaluation(config: EvalConfig, runs_dir: Path | str = DEFAULT_RUNS_DIR) -> tuple[Run, Dataset, bool]:
    """The run, the dataset (the run's own unless `config.data` says otherwise) and whether
    the run was picked automatically."""
    path, automatic = resolve_run_path(config.model, runs_dir)
    run = load_run(path, device=resolve_device(config.runtime.device))
    dataset = load_dataset(config.data or run.data_spec)
    check_fits_data(torch_classifier(run), dataset)
    return run, dataset, automatic


def _python_module(overrides: dict[str, Any]) -> Optional[nn.Module]:
    """A torch module passed as `model` (taken out of the flat settings, which hold names only)."""
    return overrides.pop("model") if isinstance(overrides.get("model"), nn.Module) else None


def load_model_and_data(config: EvalConfig, *, module: Optional[nn.Module] = None, run: Optional[Run] = None,
                        classifier: Optional[Classifier] = None, dataset: Optional[Dataset] = None,
                        runs_dir: Path | str = DEFAULT_RUNS_DIR) -> tuple[Classifier, Dataset]:
    """The model to attack (a module, a run, a loaded classifier or `config.model`) and its data."""
    if module is not None:
        classifier = module_classifier(module, config.contract, path=f"(python module {type(module).__name__})")
    elif classifier is None and run is not None:
        refuse_contract_for_runs(config.contract)
        classifier = torch_classifier(run)
    elif classifier is None:
        request = LoadRequest(device=config.runtime.device, contract=config.contract,
                              trust_pickled_model=config.trust_pickled_model)
        classifier, _ = load_classifier(config.model, backend=config.backend, runs_dir=runs_dir, request=request)
    if dataset is None:
        spec = config.data or classifier.data_spec
        if spec is None:
            raise AdvcliError(f"{classifier.path} does not name its data; pass `data`", param="data")
        dataset = load_dataset(spec)
    check_fits_data(classifier, dataset)
    return classifier, dataset


def chance_warning(clean_accuracy: float, num_classes: int, samples: int) -> Optional[str]:
    """A warning when a foreign model is at chance on clean data: its contract probably does not fit."""
    if samples < CHANCE_SAMPLES or clean_accuracy > CHANCE_FACTOR / max(num_classes, 1):
        return None
    return (f"clean accuracy {clean_accuracy:.1%} is near chance ({1 / num_classes:.1%}): the input contract may not "
            "describe the model (`input_range`, `mean`, `std`, `layout`, `channel_order`), or the data is not its data")


def evaluate(
    config: Optional[EvalConfig] = None,
    *,
    run: Optional[Run] = None,
    classifier: Optional[Classifier] = None,
    dataset: Optional[Dataset] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    on_progress: Optional[Callable[[str, int, int], None]] = None,
    **overrides: Any,
) -> EvalReport:
    """Clean and robust accuracy of a model (the newest run under `runs_dir` by default).

    ``advcli.evaluate(attacks=("bim",), eps=0.1, iters=20)`` reproduces the reference evaluation;
    ``advcli.evaluate(attacks=("auto",), eps=(0.05, 0.1, 0.2), per_class=True)`` gives a curve;
    ``advcli.evaluate(model="model.onnx", attacks=("auto",))`` attacks an ONNX file white-box
    through its conversion to torch (see :mod:`advcli.evaluation.victims` for the fallbacks).
    `run` or `classifier` pass a model already loaded.

    `model` may also be any ``torch.nn.Module``: it is attacked white-box on its own gradients and
    judges itself. Its contract: it takes batches shaped as `layout` says (``nchw`` by default), with
    values in `input_range` ((0, 1) by default) after the `mean`/`std` normalisation if given, and
    returns (N, classes) logits (or probabilities, then attacked through their logarithm; `outputs`
    says which, ``auto`` finds out). It is put in eval mode and runs on the device of its parameters;
    `data` is a data spec or a loaded :class:`~advcli.data.dataset.Dataset` (images in [0, 1], NCHW,
    whatever the model's contract). eps is always in [0, 1] pixel units.
    `on_progress(stage, done, total)` is called after every batch.
    """
    module = _python_module(overrides)
    dataset = overrides.pop("data") if isinstance(overrides.get("data"), Dataset) else dataset
    config = configured(config, overrides)
    classifier, dataset = load_model_and_data(config, module=module, run=run, classifier=classifier,
                                              dataset=dataset, runs_dir=runs_dir)
    x_all, y_all = dataset.split(config.sampling.split)
    picks = select_samples(len(x_all), config.sampling.samples, config.sampling.seed)
    if len(picks) == 0:
        raise AdvcliError(f"data {dataset.spec} has no {config.sampling.split} samples")
    prepared = prepare(classifier, x_all[picks], config)
    report = measure_robustness(
        prepared, y_all[picks], config, classes=list(config.contract.class_names or dataset.classes),
        model_name=str(classifier.path), model_fingerprint=classifier.fingerprint, data_name=dataset.spec,
        data_fingerprint=dataset.fingerprint, on_progress=on_progress)
    report.backend = classifier.backend
    report.execution_providers = classifier.execution_providers
    report.notes = list(dict.fromkeys(classifier.notes + report.notes))
    warning = chance_warning(report.clean_accuracy, report.num_classes, report.samples) if classifier.contract else None
    report.warnings += [warning] if warning else []
    report.transfer_fingerprint = prepared.source.fingerprint if prepared.source is not None else None
    return report


def save_curve_plot(report: EvalReport, path: Path | str) -> Path:
    """Write robust accuracy against eps (each attack and the worst case) as a PNG, atomically."""
    from ..io.plots import save_robustness_curve

    path = Path(path)
    check_plot_path(path)
    eps = [point.eps for point in report.curve]
    series = {result.attack.name: [point.attacks[index].robust_accuracy for point in report.curve]
              for index, result in enumerate(report.attacks)}
    if len(series) > 1:
        series["worst case"] = [point.robust_accuracy for point in report.curve]
    title = (f"{Path(report.model).name or report.model}: robust accuracy ({report.config.threats.norm}, "
             f"{report.samples} samples)")
    save_robustness_curve(eps, series, path, title=title, clean_accuracy=report.clean_accuracy,
                          chance=1 / report.num_classes if report.num_classes else None)
    return path


def check_plot_path(path: Path | str) -> None:
    """Refuse a plot path that cannot work, before any evaluation starts."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise AdvcliError(f"`plot` must end in .png, got {path}", param="plot")
    if path.is_dir():
        raise AdvcliError(f"`plot` {path} is a folder", param="plot")
