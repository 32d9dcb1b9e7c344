"""Crafting adversarial examples for a dataset split and saving them (``.npz``, no pickle) with a picture.

White-box gradients run in the configured precision (:mod:`advcli.precision`); the saved
predictions are float32 classifications, as in an evaluation.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from .attacks import AttackConfig
from .data import Dataset
from .errors import AdvcliError
from .evaluation import EvalConfig, clean_predictions, load_for_evaluation, robust_predictions, select_samples
from .precision import crafting_model, deciding_model, resolve_precision
from .provenance import package_versions, utc_now
from .runs import DEFAULT_RUNS_DIR, Run


@dataclass
class CraftConfig:
    """Everything that decides an ``advcli attack`` job."""

    model: Optional[str] = None
    data: Optional[str] = None
    split: str = "test"
    attack: str = "bim"
    eps: float = 0.1
    alpha: Optional[float] = None
    iters: Optional[int] = None
    restarts: int = 1
    init: Optional[str] = None
    clip: bool = True
    samples: Optional[int] = None
    seed: int = 0
    batch_size: int = 500
    device: str = "auto"
    precision: str = "auto"
    queries: Optional[int] = None
    norm: str = "linf"
    target: Optional[str] = None
    out: Optional[str] = None
    grid: Optional[str] = None

    def as_eval_config(self) -> EvalConfig:
        fields = {k: v for k, v in asdict(self).items() if k not in ("attack", "out", "grid")}
        return EvalConfig(attacks=(self.attack,), **fields)


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


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    Output defaults to ``<run>/attacks/<attack>-eps<eps>-<split>.npz`` (``-l2`` after the attack
    name under the L2 norm, ``-to-<target>`` after the radius when targeted) with a 4x4 PNG grid
    beside it. An existing output file is never overwritten.
    """
    config = CraftConfig(**{**asdict(config or CraftConfig()), **overrides})
    eval_config = config.as_eval_config()
    eval_config.validate()
    (attack,) = eval_config.resolved_attacks()
    if run is None:
        run, loaded, _ = load_for_evaluation(eval_config, runs_dir)
        dataset = dataset or loaded
    elif dataset is None:
        raise AdvcliError("craft: pass the dataset together with the run")
    if attack.target is not None and attack.target.isdigit() and int(attack.target) >= len(run.classes):
        raise AdvcliError(f"--target {attack.target}: the model has classes 0 to {len(run.classes) - 1}")
    out = Path(config.out) if config.out else run.path / "attacks" / default_output_name(attack, config.split)
    if out.suffix != ".npz":
        raise AdvcliError(f"--out must end in .npz, got {out}")
    grid = Path(config.grid) if config.grid else out.with_suffix(".png")
    for target in (out, grid):
        if target.exists():
            raise AdvcliError(f"{target} already exists; choose another --out/--grid (results are never overwritten)")

    device = next(run.model.parameters()).device
    precision = resolve_precision(config.precision, device)
    x_all, y_all = dataset.split(config.split)
    picks = select_samples(len(x_all), config.samples, config.seed)
    x, y = x_all[picks], y_all[picks]
    crafter = crafting_model(run.model, precision, device)
    judge = deciding_model(crafter)  # float32 (in reduced precision: the crafting copy's layout)
    clean_pred = clean_predictions(judge, x, batch_size=config.batch_size, device=device)
    done = 0

    def advance(batch: int) -> None:
        nonlocal done
        done += batch
        if on_progress is not None:
            on_progress(attack.name, done, len(x))

    generator = torch.Generator(device=device).manual_seed(config.seed)
    adv_pred, _, x_adv, targets = robust_predictions(
        judge, x, y, attack, batch_size=config.batch_size, device=device,
        generator=generator, on_batch=advance, keep_adversarials=True, crafter=crafter,
    )
    meta = {"model": str(run.path), "model_fingerprint": run.fingerprint, "data": dataset.spec,
            "data_fingerprint": dataset.fingerprint, "split": config.split, "attack": attack.to_dict(),
            "precision": precision,
            "config": asdict(config), "classes": list(dataset.classes), "versions": package_versions(),
            "created": utc_now()}
    arrays = {
        "originals": x.numpy(), "adversarials": x_adv.numpy(), "labels": y.numpy(),
        "clean_predictions": clean_pred.numpy(), "adversarial_predictions": adv_pred.numpy(),
        "indices": picks.numpy(), "meta": np.array(json.dumps(meta)),
    }
    hit_rate, untargetable = None, 0
    if targets is not None:
        arrays["targets"] = targets.numpy()
        aimed = targets != y
        untargetable = int((~aimed).sum())
        hit_rate = float((adv_pred[aimed] == targets[aimed]).float().mean()) if bool(aimed.any()) else None
    _save_npz_atomic(out, arrays)
    from .plots import save_prediction_grid

    save_prediction_grid(x_adv.numpy(), adv_pred.tolist(), y.tolist(), dataset.classes, grid, seed=config.seed)
    return CraftResult(
        path=out, grid=grid, run=str(run.path), samples=len(x),
        clean_accuracy=float((clean_pred == y).float().mean()),
        adversarial_accuracy=float((adv_pred == y).float().mean()), attack=attack.to_dict(),
        target_hit_rate=hit_rate, untargetable=untargetable, precision=precision,
    )
