"""What the multi-process tests run through advcli itself, on every rank of a job (see
tests/distributed_worker.py) and, for comparison, in the test process on one: the training
configurations, and the scenarios that train, resume and evaluate with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from advcli.data import generate_digits, load_dataset
from advcli.evaluation.api import evaluate
from advcli.evaluation.config import EvalConfig
from advcli.evaluation.crafting import CraftConfig, craft
from advcli.evaluation.engine import attack_over_radii, clean_predictions
from advcli.io.runs import load_run
from advcli.runtime.distributed import DistributedContext
from advcli.runtime.victim import Victim
from advcli.training.api import resume_training, train
from advcli.training.config import TrainConfig
from advcli.training.loop import train_model
from advcli.training.methods import METHODS

Report = dict[str, Any]
Tensors = dict[str, torch.Tensor]

STOP_AT = 7  # the iteration after which the interrupted runs stop
EVAL_ATTACKS = ("fgsm", "bim")  # deterministic: exactly one process's figures on any number
EVAL_RADII = (0.05, 0.15)
SQUARE_QUERIES = 30


def write_data(folder: Path) -> str:
    """A small digits dataset (256 train, 64 test) as npz; its data spec."""
    x_train, y_train, x_test, y_test = generate_digits(n_train=256, n_test=64, seed=5)
    path = folder / "digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return f"npz:{path}"


def method_config(method: str, data: str) -> TrainConfig:
    """One epoch of `method` (2 for plain training) in batches of 63 (shards of 32 and 31; the last
    batch of 4 in shards of 2), keyed draws so one process can be compared with two."""
    adversarial = {} if method == "none" else {"eps": 0.1, "iters": 2 if METHODS.get(method).multi_step else None}
    if method == "fgsm-rs":
        adversarial["iters"] = None
    return TrainConfig.of(data=data, arch="mnist-small", method=method, epochs=2 if method == "none" else 1,
                          batch_size=63, lr=0.05, val_split=0.0, device="cpu", keyed_noise=True, seed=3,
                          **{key: value for key, value in adversarial.items() if value is not None})


def guard_config(data: str) -> TrainConfig:
    """FGSM-RS validated every 2 iterations on a quarter of the data, rolling back at small drops."""
    return TrainConfig.of(data=data, arch="mnist-small", method="fgsm-rs", eps=0.02, epochs=3, batch_size=50, lr=0.3,
                          val_split=0.25, val_every=2, val_iters=3, collapse_drop=0.01, on_collapse="rollback",
                          device="cpu", keyed_noise=True, seed=1)


def resume_config(data: str) -> TrainConfig:
    """Free training (its perturbation carried from update to update): 20 updates, 4 per batch."""
    return TrainConfig.of(data=data, arch="mnist-small", method="free", eps=0.1, epochs=4, batch_size=63, lr=0.05,
                          val_split=0.0, device="cpu", keyed_noise=True, seed=2)


def stop_after(iteration: int, rank: Optional[int] = None,
               context: Optional[DistributedContext] = None) -> Callable[[], bool]:
    """A stop request seen (by rank `rank` only, when given) once `iteration` updates are done."""
    calls = {"count": 0}

    def should_stop() -> bool:
        calls["count"] += 1
        return calls["count"] >= iteration and (rank is None or context is None or context.rank == rank)

    return should_stop


def flat_parameters(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([value.detach().reshape(-1).float() for value in model.state_dict().values()])


def job_inputs(out: Path) -> dict[str, Any]:
    return json.loads((out / "job.json").read_text())


def training(context: DistributedContext, report: Report, tensors: Tensors, out: Path) -> None:
    """Every method, the guard, and interrupted runs both ways, through advcli's loop and run folders."""
    job = job_inputs(out)
    data = job["data"]
    dataset = load_dataset(data)
    report["losses"] = {}
    for method in METHODS.names():
        result = train_model(method_config(method, data), dataset=dataset, context=context)
        tensors[f"method.{method}"] = flat_parameters(result.model)
        report["losses"][method] = [row["loss"] for row in result.history]
    guarded = train_model(guard_config(data), dataset=dataset, context=context)
    report["guard"] = guarded.guard
    report["guard_history"] = [{key: row.get(key) for key in ("iteration", "val_robust_accuracy", "lr")}
                               for row in guarded.history]
    tensors["guarded"] = flat_parameters(guarded.model)
    path, stopped = train(resume_config(data), out=out / "two-stopped", dataset=dataset, context=context,
                          should_stop=stop_after(STOP_AT, rank=1, context=context))
    report["stopped"] = {"interrupted": stopped.interrupted, "iterations": stopped.metrics["iterations"],
                         "saved": (path / "model.json").is_file(), "has_state": stopped.resume_state is not None}
    report["stopped_path"] = str(path)
    path, resumed = resume_training(job["single_stopped"], out=out / "two-resumed", dataset=dataset, context=context)
    tensors["resumed"] = flat_parameters(resumed.model)
    report["resumed_iterations"] = resumed.metrics["iterations"]


def eval_config(run: str, data: str) -> EvalConfig:
    return EvalConfig.of(model=run, data=data, attacks=EVAL_ATTACKS, eps=EVAL_RADII, per_class=True, batch_size=9,
                         sanity_samples=16, device="cpu", precision="fp32")


def evaluation(context: DistributedContext, report: Report, tensors: Tensors, out: Path) -> None:
    """The report, the engine's per-sample outcomes and crafted examples, on shards."""
    job = job_inputs(out)
    config = eval_config(job["run"], job["data"])
    report["report"] = evaluate(config, context=context).to_dict()
    report["square"] = evaluate(config.with_flat(attacks=("square",), eps=0.15, queries=SQUARE_QUERIES, per_class=False,
                                                 sanity_samples=0), context=context).to_dict()
    run = load_run(job["run"])
    x, y = load_dataset(job["data"]).split("test")
    victim = Victim.of(run.model, precision="fp32")
    clean = clean_predictions(victim, x, batch_size=9, context=context) == y
    tensors["clean"] = clean
    for index, name in enumerate(EVAL_ATTACKS):
        attacks = [config.resolved_attacks(eps)[index] for eps in EVAL_RADII]
        for eps, outcome in zip(EVAL_RADII, attack_over_radii(victim, x, y, clean, attacks, num_classes=10,
                                                              batch_size=9, seed=0, context=context)):
            tensors[f"{name}.{eps}.broken_by"] = outcome.broken_by
    crafted = craft(CraftConfig.of(model=job["run"], data=job["data"], attack="bim", eps=0.1, batch_size=9,
                                   device="cpu", precision="fp32", out=str(out / "crafted.npz")), context=context)
    report["crafted"] = {"adversarial_accuracy": crafted.adversarial_accuracy, "samples": crafted.samples}
