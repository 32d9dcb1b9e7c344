"""Target classes for targeted attacks, chosen on the clean inputs by a named rule."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..errors import AttackError
from ..registry import Registry
from ..runtime.autocast import deciding_model
from ..runtime.execution import attack_mode

# rule(logits, y, number, generator) -> a target class per sample
TargetRule = Callable[[torch.Tensor, torch.Tensor, int, Optional[torch.Generator]], torch.Tensor]


def parse_target(spec: str) -> tuple[str, int]:
    """Split a target spec into a rule and its number: ``3`` (that class), ``random`` (a uniformly
    drawn wrong class), ``least-likely`` (the clean input's lowest logit) or ``top-N`` (its N-th
    most likely wrong class)."""
    text = str(spec).strip().lower()
    if text in ("random", "least-likely"):
        return text, 0
    if text.isdigit():
        return "class", int(text)
    if text.startswith("top-") and text[4:].isdigit() and int(text[4:]) >= 1:
        return "top", int(text[4:])
    raise AttackError(f"`target` must be a class index, random, least-likely or top-N, got {spec!r}", param="target")


def _ranked_wrong_classes(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Classes other than the label, most likely first (per sample)."""
    masked = logits.clone()
    masked.scatter_(1, y[:, None], float("-inf"))
    return masked.argsort(dim=1, descending=True)[:, : logits.shape[1] - 1]


def _class_target(logits, y, number, generator):
    if number >= logits.shape[1]:
        raise AttackError(f"target class {number} does not exist: the model has {logits.shape[1]} classes",
                          param="target")
    return torch.full_like(y, number)


def _random_target(logits, y, number, generator):
    offsets = torch.randint(1, logits.shape[1], y.shape, generator=generator, device=y.device)
    return (y + offsets) % logits.shape[1]


def _least_likely_target(logits, y, number, generator):
    return _ranked_wrong_classes(logits, y)[:, -1]


def _top_target(logits, y, number, generator):
    if number > logits.shape[1] - 1:
        raise AttackError(f"target top-{number} does not exist: the model has {logits.shape[1] - 1} wrong classes",
                          param="target")
    return _ranked_wrong_classes(logits, y)[:, number - 1]


TARGET_RULES: Registry[TargetRule] = Registry("target rule", param="target", order=("class", "random", "least-likely", "top"),
                                              entries={"class": _class_target, "random": _random_target,
                                                       "least-likely": _least_likely_target, "top": _top_target})


def choose_targets(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: str, *, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Target classes for a targeted attack on clean inputs `x`, by the rule in `spec`
    (see :func:`parse_target`). A fixed class equals the label for that class's own samples;
    :meth:`advcli.attacks.AttackConfig.run` leaves those samples unattacked."""
    rule, number = parse_target(spec)
    with torch.no_grad(), attack_mode(model):
        logits = deciding_model(model)(x).float()
    if logits.shape[1] < 2:
        raise AttackError("targeted attacks need at least 2 classes")
    return TARGET_RULES.get(rule)(logits, y, number, generator)
