"""Crafting adversarial examples for a dataset split (``advcli attack``) and saving them (``.npz``, no
pickle) with a picture.

Crafting runs through the evaluation engine (:mod:`advcli.evaluation.engine`): the same
re-check against the threat model and re-classification, in the same precision rules. Unlike an
evaluation, which attacks only the samples classified correctly clean, crafting attacks every sample
of the selection (a targeted attack may still move a misclassified sample to its target).
"""

from __future__ import annotations

import io
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
from ..io.atomic import write_bytes_atomic
from ..io.provenance import package_versions, utc_now
from ..io.runs import DEFAULT_RUNS_DIR, Run
from ..runtime.coordination import main_decides
from ..runtime.distributed import DistributedContext
from ..runtime.victim import Victim
from ..settings import FlatSettings
from .api import load_for_evaluation
from .config import AttackOptions, EvalConfig, Runtime, Sampling, Threats
from .engine import SINGLE, AttackedSamples, attack_samples, clean_predictions


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

    def as_eval_config(self) -> EvalConfig:
        return EvalConfig(model=self.model, data=self.data, attacks=(self.attack,), threats=self.threats,
                          attack_options=self.attack_options, sampling=self.sampling, runtime=self.runtime)

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

    def to_dict(self) -> dict[str, Any]:
        result = {"adversarials": str(self.path), "grid": str(self.grid), "model": self.run,
                  "samples": self.samples, "clean_accuracy": self.clean_accuracy,
                  "adversarial_accuracy": self.adversarial_accuracy, "attack": self.attack,
                  "precision": self.precision}
        if self.attack.get("target") is not None:
            result["target_hit_rate"] = self.target_hit_rate
            result["untargetable"] = self.untargetable
        return result


def default_output_name(attack: AttackConfig, split: str) -> str:
    """``<attack>[-l2]-eps<eps>[-to-<target>]-<split>.npz``: the norm and target only when given."""
    norm = "" if attack.norm == "linf" else f"-{attack.norm}"
    target = "" if attack.target is None else f"-to-{attack.target}"
    return f"{attack.name}{norm}-eps{attack.eps:g}{target}-{split}.npz"


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())


def _destinations(config: CraftConfig, run: Run, attack: AttackConfig) -> tuple[Path, Path]:
    """The .npz and grid paths, refused before any work when they cannot be written or exist."""
    out = Path(config.out) if config.out else run.path / "attacks" / default_output_name(attack, config.sampling.split)
    if out.suffix != ".npz":
        raise AdvcliError(f"`out` must end in .npz, got {out}", param="out")
    grid = Path(config.grid) if config.grid else out.with_suffix(".png")
    for target in (out, grid):
        if target.exists():
            raise AdvcliError(f"{target} already exists; choose another `out`/`grid` (results are never overwritten)",
                              param="out")
    return out, grid


def craft(
    config: Optional[CraftConfig] = None,
    *,
    run: Optional[Run] = None,
    dataset: Optional[Dataset] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    on_progress: Optional[Callable[[str, int, int], None]] = None,
    context: DistributedContext = SINGLE,
    **overrides: Any,
) -> CraftResult:
    """Attack a model on a dataset split; save originals, adversarials, labels and predictions
    (and, for a targeted attack, the target classes).

    Output defaults to ``<run>/attacks/<attack>-eps<eps>-<split>.npz`` (``-l2`` after the attack
    name under the L2 norm, ``-to-<target>`` after the radius when targeted) with a 4x4 PNG grid
    beside it. An existing output file is never overwritten. Under torchrun every process passes
    its `context`: they share the samples, and rank 0 writes the files.
    """
    config = (config or CraftConfig()).with_flat(**overrides)
    config.validate()
    eval_config = config.as_eval_config()
    (attack,) = eval_config.resolved_attacks()
    if run is None:
        run, loaded, _ = load_for_evaluation(eval_config, runs_dir)
        dataset = dataset or loaded
    elif dataset is None:
        raise AdvcliError("craft: pass the dataset together with the run")
    if attack.target is not None and attack.target.isdigit() and int(attack.target) >= len(run.classes):
        raise AdvcliError(f"`target` {attack.target}: the model has classes 0 to {len(run.classes) - 1}", param="target")
    out, grid = _destinations(config, run, attack)
    x_all, y_all = dataset.split(config.sampling.split)
    picks = select_samples(len(x_all), config.sampling.samples, config.sampling.seed)
    x, y = x_all[picks], y_all[picks]
    victim = Victim.of(run.model, precision=config.runtime.precision)
    clean_pred = clean_predictions(victim, x, batch_size=config.runtime.batch_size, context=context)
    rows = torch.arange(len(x))
    done = 0

    def advance(batch: int) -> None:
        nonlocal done
        done += batch
        if on_progress is not None:
            on_progress(attack.name, done, len(rows))

    outcome = attack_samples(victim, x, y, attack, rows=rows, num_classes=len(run.classes),
                             batch_size=config.runtime.batch_size, seed=config.sampling.seed, on_batch=advance,
                             keep_adversarials=True, context=context)
    adv_pred = outcome.predictions
    hit_rate, untargetable = None, 0
    if attack.target is not None:
        aimed = outcome.targets != y
        untargetable = int((~aimed).sum())
        hit_rate = float((adv_pred[aimed] == outcome.targets[aimed]).float().mean()) if bool(aimed.any()) else None
    meta = {"model": str(run.path), "model_fingerprint": run.fingerprint, "data": dataset.spec,
            "data_fingerprint": dataset.fingerprint, "split": config.sampling.split, "attack": attack.to_dict(),
            "precision": victim.precision, "config": config.flat(), "classes": list(dataset.classes),
            "versions": package_versions(), "created": utc_now()}
    main_decides(lambda: _save_outputs(out, grid, meta, x, y, picks, clean_pred, outcome, dataset.classes,
                                       config.sampling.seed), context)
    return CraftResult(
        path=out, grid=grid, run=str(run.path), samples=len(x),
        clean_accuracy=float((clean_pred == y).float().mean()),
        adversarial_accuracy=float((adv_pred == y).float().mean()), attack=attack.to_dict(),
        target_hit_rate=hit_rate, untargetable=untargetable, precision=victim.precision,
    )


def _save_outputs(out: Path, grid: Path, meta: dict[str, Any], x: torch.Tensor, y: torch.Tensor, picks: torch.Tensor,
                  clean_pred: torch.Tensor, outcome: AttackedSamples, classes: Any, seed: int) -> None:
    """The .npz of originals, adversarials, labels and predictions (targets when targeted) and its grid."""
    from ..io.plots import save_prediction_grid

    assert outcome.adversarials is not None
    x_adv, adv_pred = outcome.adversarials, outcome.predictions
    arrays = {
        "originals": x.numpy(), "adversarials": x_adv.numpy(), "labels": y.numpy(),
        "clean_predictions": clean_pred.numpy(), "adversarial_predictions": adv_pred.numpy(),
        "indices": picks.numpy(), "meta": np.array(json.dumps(meta)),
    }
    if meta["attack"].get("target") is not None:
        arrays["targets"] = outcome.targets.numpy()
    _save_npz(out, arrays)
    save_prediction_grid(x_adv.numpy(), adv_pred.tolist(), y.tolist(), classes, grid, seed=seed)
