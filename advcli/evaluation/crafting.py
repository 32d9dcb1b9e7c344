"""Crafting adversarial examples for a dataset split (``advcli attack``) and saving them (``.npz``, no
pickle) with a picture.

Crafting runs through the evaluation engine (:mod:`advcli.evaluation.engine`): the same
re-check against the threat model and re-classification, in the same precision rules, on the same
victims (:mod:`advcli.evaluation.victims`). Unlike an
evaluation, which attacks only the samples classified correctly clean, crafting attacks every sample
of the selection (a targeted attack may still move a misclassified sample to its target).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..attacks.config import AttackConfig
from ..data.dataset import Dataset
from ..data.selection import select_samples
from ..errors import AdvcliError
from ..io.atomic import atomic_path
from ..io.destinations import check_destination
from ..io.provenance import package_versions, utc_now
from ..io.runs import DEFAULT_RUNS_DIR, Run
from ..runtime.classifier import Classifier
from ..runtime.onnx_import.contract import InputContract
from ..settings import FlatSettings
from .api import load_model_and_data
from .config import AttackOptions, EvalConfig, Runtime, Sampling, Threats
from .engine import attack_samples, clean_predictions
from .victims import Prepared, prepare


@dataclass(frozen=True)
class CraftConfig(FlatSettings):
    """Everything that decides an ``advcli attack`` job: the evaluation's value objects, one attack
    at one radius, and where the results go (`out`: the .npz, `grid`: the PNG)."""

    model: Optional[str] = None
    data: Optional[str] = None
    attack: str = "bim"
    threats: Threats = field(default_factory=Threats)
    attack_options: AttackOptions = field(default_factory=AttackOptions)
    sampling: Sampling = field(default_factory=Sampling)
    runtime: Runtime = field(default_factory=Runtime)
    out: Optional[str] = None
    grid: Optional[str] = None
    backend: Optional[str] = None
    source: Optional[str] = None
    contract: InputContract = field(default_factory=InputContract)
    convert: bool = True
    trust_pickled_model: bool = False

    def as_eval_config(self) -> EvalConfig:
        return EvalConfig(model=self.model, data=self.data, attacks=(self.attack,), threats=self.threats,
                          attack_options=self.attack_options, sampling=self.sampling, runtime=self.runtime,
                          backend=self.backend, source=self.source, contract=self.contract, convert=self.convert,
                          trust_pickled_model=self.trust_pickled_model)

    def validate(self) -> None:
        """Reject impossible settings before any model or data is loaded."""
        if isinstance(self.threats.eps, (tuple, list)) and len(self.threats.eps) != 1:
            raise AdvcliError(f"`eps` takes one radius when crafting, got {self.threats.eps!r}", param="eps")
        self.as_eval_config().validate()


@dataclass
class CraftResult:
    path: Path
    grid: Path
    run: str
    samples: int
    clean_accuracy: float
    adversarial_accuracy: float
    attack: dict[str, Any]
    target_hit_rate: Optional[float] = None  # targeted: share of the attacked samples predicted as their target
    untargetable: int = 0  # targeted: samples whose target was their own label (left unattacked)
    precision: str = "fp32"  # of the attack's gradients
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    white_box: Optional[dict[str, Any]] = None  # what crafted the attack, and why (victims.prepare)

    def to_dict(self) -> dict[str, Any]:
        result = {"adversarials": str(self.path), "grid": str(self.grid), "model": self.run,
                  "samples": self.samples, "clean_accuracy": self.clean_accuracy,
                  "adversarial_accuracy": self.adversarial_accuracy, "attack": self.attack,
                  "precision": self.precision, "white_box": self.white_box, "notes": self.notes,
                  "warnings": self.warnings}
        if self.attack.get("target") is not None:
            result["target_hit_rate"] = self.target_hit_rate
            result["untargetable"] = self.untargetable
        return result


def default_output_name(attack: AttackConfig, split: str) -> str:
    """``<attack>[-l2]-eps<eps>[-to-<target>]-<split>.npz``: the norm and target only when given."""
    norm = "" if attack.norm == "linf" else f"-{attack.norm}"
    target = "" if attack.target is None else f"-to-{attack.target}"
    return f"{attack.name}{norm}-eps{attack.eps:g}{target}-{split}.npz"


def _destinations(config: CraftConfig, classifier: Classifier, attack: AttackConfig) -> tuple[Path, Path]:
    """The .npz and grid paths, refused before any work when they cannot be written or exist. By
    default a run's results go to its ``attacks/`` folder, a file's to ``attacks/`` beside it."""
    name = default_output_name(attack, config.sampling.split)
    if config.out:
        out = Path(config.out)
    elif classifier.backend == "torch":
        out = classifier.path / "attacks" / name
    elif classifier.path.exists():
        out = classifier.path.parent / "attacks" / f"{classifier.path.stem}-{name}"
    else:
        raise AdvcliError("a Python module has no folder to save beside; pass `out`", param="out")
    if out.suffix != ".npz":
        raise AdvcliError(f"`out` must end in .npz, got {out}", param="out")
    grid = Path(config.grid) if config.grid else out.with_suffix(".png")
    if grid.suffix.lower() != ".png":
        raise AdvcliError(f"`grid` must end in .png, got {grid}", param="grid")
    check_destination(out, param="out")
    check_destination(grid, param="grid" if config.grid else "out")
    return out, grid


def _metadata(config: CraftConfig, classifier: Classifier, dataset: Dataset, attack: AttackConfig,
              prepared: Prepared, classes: list[str]) -> dict[str, Any]:
    """What the .npz records about how its adversarial examples were made."""
    victim = prepared.victim
    return {"model": str(classifier.path), "model_fingerprint": classifier.fingerprint, "backend": classifier.backend,
            "data": dataset.spec, "data_fingerprint": dataset.fingerprint, "split": config.sampling.split,
            "attack": attack.to_dict(), "precision": victim.precision, "white_box": prepared.white_box,
            "transfer_from": victim.transfer_from, "notes": classifier.notes + prepared.notes,
            "warnings": prepared.warnings, "config": config.flat(), "classes": classes,
            "versions": package_versions(), "created": utc_now()}


def _target_figures(targets: torch.Tensor, y: torch.Tensor, predictions: torch.Tensor) -> tuple[Optional[float], int]:
    """Share of the aimed samples predicted as their target, and the samples already of it."""
    aimed = targets != y
    hit_rate = float((predictions[aimed] == targets[aimed]).float().mean()) if bool(aimed.any()) else None
    return hit_rate, int((~aimed).sum())


def craft(
    config: Optional[CraftConfig] = None,
    *,
    run: Optional[Run] = None,
    dataset: Optional[Dataset] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    on_progress: Optional[Callable[[str, int, int], None]] = None,
    **overrides: Any,
) -> CraftResult:
    """Attack a model on a dataset split; save originals, adversarials, labels and predictions
    (and, for a targeted attack, the target classes).

    The model is a run, an ONNX file, a trusted TorchScript or torch.export file, or (`model`) any
    ``torch.nn.Module`` under the input contract :func:`advcli.evaluation.evaluate` describes; the
    same victim rules apply (white-box on an ONNX file's conversion, else transfer, else Square).
    Output defaults to ``<run>/attacks/<attack>-eps<eps>-<split>.npz`` (``-l2`` after the attack
    name under the L2 norm, ``-to-<target>`` after the radius when targeted) with a 4x4 PNG grid
    beside it; for a file, ``attacks/<file stem>-...`` beside the file; a module needs `out`. An
    existing output file is never overwritten.
    """
    module = overrides.pop("model") if isinstance(overrides.get("model"), torch.nn.Module) else None
    dataset = overrides.pop("data") if isinstance(overrides.get("data"), Dataset) else dataset
    config = (config or CraftConfig()).with_flat(**overrides)
    config.validate()
    eval_config = config.as_eval_config()
    if run is not None and dataset is None:
        raise AdvcliError("craft: pass the dataset together with the run")
    classifier, dataset = load_model_and_data(eval_config, module=module, run=run, dataset=dataset,
                                              runs_dir=runs_dir)
    classes = list(config.contract.class_names or dataset.classes)
    x_all, y_all = dataset.split(config.sampling.split)
    picks = select_samples(len(x_all), config.sampling.samples, config.sampling.seed)
    prepared = prepare(classifier, x_all[picks], eval_config)
    (attack,) = prepared.attacks(eval_config)
    if attack.target is not None and attack.target.isdigit() and int(attack.target) >= len(classes):
        raise AdvcliError(f"`target` {attack.target}: the model has classes 0 to {len(classes) - 1}", param="target")
    out, grid = _destinations(config, classifier, attack)
    victim, x, y = prepared.victim, prepared.x, y_all[picks]
    clean_pred = clean_predictions(victim, x, batch_size=config.runtime.batch_size)
    rows = torch.arange(len(x))
    done = 0

    def advance(batch: int) -> None:
        nonlocal done
        done += batch
        if on_progress is not None:
            on_progress(attack.name, done, len(rows))

    outcome = attack_samples(victim, x, y, attack, rows=rows, num_classes=len(classes),
                             batch_size=config.runtime.batch_size, seed=config.sampling.seed, on_batch=advance,
                             keep_adversarials=True)
    x_adv, adv_pred = outcome.adversarials, outcome.predictions
    meta = _metadata(config, classifier, dataset, attack, prepared, classes)
    arrays = {
        "originals": x.numpy(), "adversarials": x_adv.numpy(), "labels": y.numpy(),
        "clean_predictions": clean_pred.numpy(), "adversarial_predictions": adv_pred.numpy(),
        "indices": picks.numpy(), "meta": np.array(json.dumps(meta)),
    }
    hit_rate, untargetable = None, 0
    if attack.target is not None:
        arrays["targets"] = outcome.targets.numpy()
        hit_rate, untargetable = _target_figures(outcome.targets, y, adv_pred)
    from ..io.plots import save_prediction_grid

    with atomic_path(out, suffix=".npz") as staged, open(staged, "wb") as handle:
        np.savez_compressed(handle, **arrays)  # renamed into place only once the grid is written too
        save_prediction_grid(x_adv.numpy(), adv_pred.tolist(), y.tolist(), classes, grid, seed=config.sampling.seed)
    return CraftResult(
        path=out, grid=grid, run=str(classifier.path), samples=len(x), notes=meta["notes"],
        warnings=prepared.warnings, white_box=prepared.white_box,
        clean_accuracy=float((clean_pred == y).float().mean()),
        adversarial_accuracy=float((adv_pred == y).float().mean()), attack=attack.to_dict(),
        target_hit_rate=hit_rate, untargetable=untargetable, precision=victim.precision,
    )
