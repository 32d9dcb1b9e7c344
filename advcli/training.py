"""Standard and adversarial training of registered models, with a seeded, repeatable loop.

The loop follows the reference example: SGD with momentum, a fixed learning rate, mini-batches
reshuffled every epoch. Adversarial methods differ only in the step function that turns a
mini-batch into a loss, looked up in :data:`TRAINING_METHODS`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import INITS, perturb
from .data import Dataset, load_dataset
from .devices import resolve_device
from .errors import AdvcliError
from .models import DEFAULT_MODEL, MODELS, build_model
from .provenance import package_versions, utc_now
from .runs import DEFAULT_RUNS_DIR, LOSS_PLOT_FILE, check_run_dir_free, default_run_name, save_run


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved with every checkpoint."""

    data: str = "digits"
    model: str = DEFAULT_MODEL
    epochs: int = 30
    batch_size: int = 100
    lr: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    device: str = "auto"
    method: str = "none"
    eps: float = 0.0
    alpha: Optional[float] = None
    init: str = "random"
    iters: int = 1
    clip: bool = True

    @property
    def step_size(self) -> float:
        """The adversarial step: `alpha`, or 1.25·eps as in FGSM-RS training (Wong et al., 2020)."""
        return 1.25 * self.eps if self.alpha is None else self.alpha

    def validate(self) -> None:
        """Reject impossible settings eagerly, before any data is loaded."""
        checks = [
            (self.model in MODELS, f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}"),
            (self.method in TRAINING_METHODS, f"unknown method {self.method!r}; choose one of: {', '.join(TRAINING_METHODS)}"),
            (isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"learning rate must be > 0, got {self.lr}"),
            (math.isfinite(self.momentum) and 0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (math.isfinite(self.eps) and 0 <= self.eps <= 1, f"eps must be in [0, 1], got {self.eps}"),
            (self.method == "none" or self.eps > 0, f"adversarial training ({self.method}) needs eps > 0"),
            (math.isfinite(self.step_size) and self.step_size >= 0, f"alpha must be > 0, got {self.alpha}"),
            (self.method == "none" or self.step_size > 0, f"alpha must be > 0, got {self.alpha}"),
            (self.init in INITS, f"init must be one of {', '.join(INITS)}, got {self.init!r}"),
            (isinstance(self.iters, int) and self.iters >= 1, f"iterations must be >= 1, got {self.iters}"),
        ]
        for ok, message in checks:
            if not ok:
                raise AdvcliError(message)


StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, TrainConfig, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def standard_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the clean mini-batch."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def fgsm_rs_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on FGSM (or, with iters > 1, BIM) examples from a random or zero start."""
    x_adv = perturb(
        model, x, y, eps=config.eps, alpha=config.step_size, steps=config.iters,
        random_init=config.init == "random", clip=config.clip, generator=generator,
    )
    logits = model(x_adv)
    return F.cross_entropy(logits, y), logits


TRAINING_METHODS: dict[str, StepFn] = {"none": standard_step, "fgsm-rs": fgsm_rs_step}

TrainingMethod = Enum("TrainingMethod", {name: name for name in TRAINING_METHODS}, type=str)  # type: ignore[misc]


@dataclass
class TrainProgress:
    """A snapshot handed to the progress callback after every iteration."""

    epoch: int
    epochs: int
    iteration: int
    iterations: int
    loss: float


@dataclass
class TrainResult:
    """A trained model with what it took to get there."""

    model: nn.Module
    config: TrainConfig
    dataset: Dataset
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    interrupted: bool


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 1000) -> float:
    """Clean accuracy of `model` (in eval mode) on `x`, `y`, computed in batches."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device)
        yb = y[start:start + batch_size].to(device)
        correct += int((model(xb).argmax(1) == yb).sum())
    model.train(was_training)
    return correct / max(1, len(x))


def train_model(
    config: TrainConfig,
    *,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> TrainResult:
    """Train a model as `config` says. `should_stop` is polled after every iteration
    (an interrupted run still returns the model trained so far)."""
    config.validate()
    device = resolve_device(config.device)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    torch.manual_seed(config.seed)
    model = build_model(config.model, dataset.input_shape, dataset.num_classes).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    shuffle_rng = torch.Generator().manual_seed(config.seed)
    attack_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
    step = TRAINING_METHODS[config.method]

    x_train, y_train = dataset.x_train.to(device), dataset.y_train.to(device)
    count = len(x_train)
    per_epoch = math.ceil(count / config.batch_size)
    total = per_epoch * config.epochs
    history: list[dict[str, Any]] = []
    iteration, epochs_done, interrupted = 0, 0, False
    started = time.perf_counter()
    model.train()
    for epoch in range(1, config.epochs + 1):
        order = torch.randperm(count, generator=shuffle_rng).to(device)
        for start in range(0, count, config.batch_size):
            batch = order[start:start + config.batch_size]
            xb, yb = x_train[batch], y_train[batch]
            loss, logits = step(model, xb, yb, config, attack_rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise AdvcliError(f"training diverged at iteration {iteration} (loss {loss_value}); lower --lr")
            history.append({
                "iteration": iteration,
                "epoch": epoch,
                "loss": round(loss_value, 6),
                "batch_accuracy": round(float((logits.argmax(1) == yb).float().mean()), 4),
            })
            if on_progress is not None:
                on_progress(TrainProgress(epoch, config.epochs, iteration, total, loss_value))
            if should_stop is not None and should_stop():
                interrupted = True
                break
        if interrupted:
            break
        epochs_done = epoch
    seconds = time.perf_counter() - started
    model.eval()
    metrics = {
        "clean_test_accuracy": round(accuracy(model, dataset.x_test, dataset.y_test), 6),
        "final_loss": history[-1]["loss"] if history else None,
        "epochs_completed": epochs_done,
        "iterations": iteration,
        "interrupted": interrupted,
        "train_seconds": round(seconds, 2),
        "device": str(device),
    }
    return TrainResult(model, config, dataset, history, metrics, interrupted)


def run_metadata(result: TrainResult) -> dict[str, Any]:
    """The ``model.json`` description of a trained model."""
    dataset = result.dataset
    return {
        "created": utc_now(),
        "architecture": result.config.model,
        "input_shape": list(dataset.input_shape),
        "input_range": [0.0, 1.0],
        "classes": list(dataset.classes),
        "training": {
            "method": result.config.method,
            "eps": result.config.eps if result.config.method != "none" else 0.0,
            "alpha": result.config.step_size if result.config.method != "none" else None,
        },
        "config": asdict(result.config),
        "data": dataset.describe(),
        "seed": result.config.seed,
        "versions": package_versions(),
        "metrics": result.metrics,
    }


def save_training(result: TrainResult, path: Path) -> Path:
    """Save a trained model as a run folder (weights, model.json, history.csv, loss.png)."""
    from .plots import save_loss_curve

    title = f"Training loss ({result.config.method}, {result.config.model}, {result.dataset.name})"
    return save_run(
        path, result.model, run_metadata(result), result.history,
        extra_writers=[lambda folder: save_loss_curve(result.history, folder / LOSS_PLOT_FILE, title=title)],
    )


def train(
    config: Optional[TrainConfig] = None,
    *,
    out: Optional[Path | str] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    **overrides: Any,
) -> tuple[Path, TrainResult]:
    """Train and save a run folder; returns its path and the result.

    ``advcli.train(epochs=5)`` trains the reference network on the built-in digits;
    ``advcli.train(method="fgsm-rs", eps=0.1)`` does FGSM adversarial training.
    """
    config = TrainConfig(**{**asdict(config or TrainConfig()), **overrides})
    config.validate()
    kind = "standard" if config.method == "none" else "robust"
    path = Path(out) if out is not None else Path(runs_dir) / default_run_name(kind)
    check_run_dir_free(path)
    result = train_model(config, dataset=dataset, on_progress=on_progress, should_stop=should_stop)
    return save_training(result, path), result


def robust_train(config: Optional[TrainConfig] = None, **kwargs: Any) -> tuple[Path, TrainResult]:
    """:func:`train` with FGSM-RS adversarial training at eps 0.1 unless told otherwise."""
    if config is None:
        kwargs.setdefault("method", "fgsm-rs")
        kwargs.setdefault("eps", 0.1)
    return train(config, **kwargs)
