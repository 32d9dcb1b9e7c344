"""Capturing an interrupted run's state and restoring it, so a resumed run continues exactly where it
stopped (bit for bit on the CPU for a deterministic configuration)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..data.dataset import Dataset
from ..errors import AdvcliError, CheckpointError, DataError
from ..io.resume import RESUME_TENSORS_FILE, ResumeState, grouped, pack_optimizer, read_resume_state, unpack_optimizer
from ..io.runs import read_run_meta
from ..io.weights import check_layout, model_layout, tensors_layout
from ..models.build import build_model
from .config import TrainConfig, config_from_flat, saved_config
from .guard import CollapseGuard

RNG_TENSORS = ("rng.shuffle", "rng.attack", "rng.global")
_RESUME_OVERHEAD = 256 << 20  # bytes a resume state may hold beyond copies of the weights (order, carry, RNG)


@dataclass
class Generators:
    shuffle: torch.Generator
    attack: torch.Generator


def capture(
    config: TrainConfig, dataset: Dataset, model: nn.Module, optimizer: torch.optim.Optimizer,
    generators: Generators, guard: Optional[CollapseGuard], carry: dict[str, torch.Tensor],
    order: Optional[torch.Tensor], step: int, total: int, history: list[dict[str, Any]], seconds: float,
) -> ResumeState:
    """Everything needed to continue this run from `step` exactly as if it had not stopped."""
    optimizer_tensors, optimizer_plain = pack_optimizer(optimizer.state_dict())
    tensors = {
        **grouped("model", model.state_dict()),
        **grouped("optimizer", optimizer_tensors),
        "rng.shuffle": generators.shuffle.get_state(),
        "rng.attack": generators.attack.get_state(),
        "rng.global": torch.get_rng_state(),
        **grouped("carry", {key: value.detach() for key, value in carry.items()}),
        **grouped("carry_grad", {key: value.grad for key, value in carry.items() if value.grad is not None}),
    }
    device = next(model.parameters()).device
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    if order is not None:
        tensors["order"] = order
    info: dict[str, Any] = {
        "config": config.flat(), "data_fingerprint": dataset.fingerprint, "step": step, "total_steps": total,
        "seconds": seconds, "history": [dict(row) for row in history], "optimizer": optimizer_plain,
        "carry_requires_grad": sorted(key for key, value in carry.items() if value.requires_grad),
        "guard": None, "best_optimizer": None,
    }
    if guard is not None:
        info["guard"] = guard.record()
        if guard.best_model is not None and guard.best_optimizer is not None:
            best_tensors, info["best_optimizer"] = pack_optimizer(guard.best_optimizer)
            tensors.update(grouped("best_model", guard.best_model))
            tensors.update(grouped("best_optimizer", best_tensors))
    # Copies: the model may yet be switched to the guard's best weights, in place.
    return ResumeState(tensors={name: value.detach().clone() for name, value in tensors.items()}, info=info)


def restore(
    state: ResumeState, config: TrainConfig, dataset: Dataset, model: nn.Module, optimizer: torch.optim.Optimizer,
    generators: Generators, guard: Optional[CollapseGuard], device: torch.device,
) -> tuple[int, Optional[torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]], float]:
    """Load a resume state into the freshly built objects; returns step, order, carry, history, seconds."""
    info = state.info
    if saved_config(info.get("config")) != config.flat():
        raise CheckpointError("the resume state was written for another configuration")
    check_resume_fits(state, config, dataset)
    try:
        model.load_state_dict(state.group("model"), strict=True)
        optimizer.load_state_dict(unpack_optimizer(state.group("optimizer"), info["optimizer"]))
        generators.shuffle.set_state(state.tensors["rng.shuffle"])
        generators.attack.set_state(state.tensors["rng.attack"])
        torch.set_rng_state(state.tensors["rng.global"])
        if device.type == "cuda" and "rng.cuda" in state.tensors:
            torch.cuda.set_rng_state(state.tensors["rng.cuda"], device)
        carry = {key: value.to(device) for key, value in state.group("carry").items()}
        grads = state.group("carry_grad")
        for key in info["carry_requires_grad"]:
            carry[key].requires_grad_(True)
            if key in grads:
                carry[key].grad = grads[key].to(device)
        if guard is not None and info["guard"] is not None:
            guard.load_record(info["guard"])
            if info["best_optimizer"] is not None:
                guard.best_model = {key: value.to(device) for key, value in state.group("best_model").items()}
                guard.best_optimizer = unpack_optimizer(state.group("best_optimizer"), info["best_optimizer"])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as error:
        raise CheckpointError(f"the resume state does not fit this run ({' '.join(str(error).split())[:200]})") from None
    order = state.tensors.get("order")
    return info["step"], None if order is None else order.to(device), carry, list(info["history"]), float(info["seconds"])


def check_resume_fits(state: ResumeState, config: TrainConfig, dataset: Dataset) -> None:
    """The resume state was written for this data, and for a run of the length this data gives."""
    info = state.info
    if info["data_fingerprint"] != dataset.fingerprint:
        raise DataError(f"{dataset.spec}: not the data this run was trained on (fingerprint differs)")
    if info["total_steps"] != config.total_steps(len(dataset.x_train)):
        raise CheckpointError("the resume state does not fit this run's length")


def _check_tensors(state: ResumeState, config: TrainConfig, meta: dict[str, Any], source: str) -> None:
    """The resume tensors fit the run before anything is built from them: the model's (and the
    guard's best) weights, random generator states as bytes, the carried state the description names."""
    shape, classes = tuple(meta["input_shape"]), len(meta["classes"])
    if config.arch != meta["architecture"]:
        raise CheckpointError(f"{source}: written for {config.arch}, but the run is {meta['architecture']}")
    expected = model_layout(lambda: build_model(config.arch, shape, classes))
    what = f"{config.arch} for inputs {list(shape)} and {classes} classes"
    check_layout(tensors_layout(state.group("model")), expected, source, what)
    if state.group("best_model"):
        check_layout(tensors_layout(state.group("best_model")), expected, source, what)
    for name in RNG_TENSORS:
        tensor = state.tensors.get(name)
        if tensor is None or tensor.dtype != torch.uint8 or tensor.ndim != 1:
            raise CheckpointError(f"{source}: the random generator state {name!r} is missing or not a byte tensor")
    unknown = sorted(set(state.info["carry_requires_grad"]) - set(state.group("carry")))
    if unknown:
        raise CheckpointError(f"{source}: names carried state {unknown[0]!r} that it does not hold")
    for name in (*state.group("optimizer"), *state.group("best_optimizer")):
        if not name.partition(".")[0].isdigit():
            raise CheckpointError(f"{source}: optimizer tensor {name!r} names no parameter")


def load_resume(run: Path | str) -> tuple[TrainConfig, ResumeState, dict[str, Any]]:
    """The config, resume state and model.json of an interrupted run folder, each checked (against
    its schema, its checksum, and the run's architecture) before the data is loaded."""
    path = Path(run)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    meta = read_run_meta(path)
    if "resume" not in meta:
        raise CheckpointError(f"{path}: this run was not interrupted; there is nothing to resume")
    weights = path / meta["weights"]["file"]
    limit = 8 * (weights.stat().st_size if weights.is_file() else 0) + _RESUME_OVERHEAD
    state = read_resume_state(path, meta["resume"], max_tensor_bytes=limit)
    try:
        config = config_from_flat(state.info["config"])
        config.validate()
    except (KeyError, TypeError, ValueError, AdvcliError) as error:
        message = error.message if isinstance(error, AdvcliError) else " ".join(str(error).split())
        raise CheckpointError(f"{path}: the resume state has an unreadable config ({message})") from None
    _check_tensors(state, config, meta, str(path / RESUME_TENSORS_FILE))
    return config, state, meta
