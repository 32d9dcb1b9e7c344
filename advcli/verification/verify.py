"""Verdicts per sample, as MATLAB's verifyNetworkRobustness gives them.

* ``violated``: a concrete input inside the ball (within [0, 1]) that the model misclassifies was
  found and re-checked: the sample itself when its clean prediction is wrong (so at any eps,
  including 0), else one of advcli's attacks (PGD, then APGD with the CE and the DLR losses);
* ``verified``: every margin lower bound is positive, by more than the rounding of the bound
  computation: above 2^-10 (1 + max |logit|) in float32; samples within that band of 0 are
  recomputed in float64 and verified only above 2^-16 (1 + max |logit|), which also covers the
  float32 model's own rounding of its logits;
* ``unproven``: neither.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Optional, Sequence

import torch
from torch import nn

import advcli

from ..errors import AdvcliError
from .bounds import check_eps, check_method, margin_bounds
from .graph import BoundGraph, build_graph

FLOAT32_MARGIN = 2.0 ** -10
FLOAT64_MARGIN = 2.0 ** -16


class Verdict(IntEnum):
    UNPROVEN = 0
    VERIFIED = 1
    VIOLATED = 2


@dataclass(frozen=True)
class VerifySettings:
    """What a verification run does: the radius, the bound method and the attacks tried first."""

    eps: float
    method: str = "crown"
    intermediate: str = "crown"
    attack: bool = True
    attack_steps: int = 50
    attack_restarts: int = 1
    alpha_steps: int = 20

    def validate(self) -> None:
        check_eps(self.eps)
        check_method(self.method, self.intermediate)
        for name in ("attack_steps", "attack_restarts", "alpha_steps"):
            value, least = getattr(self, name), 0 if name == "alpha_steps" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise AdvcliError(f"{name.replace('_', ' ')} must be an integer >= {least}, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerificationResult:
    """Per sample: the verdict code, the margin lower bounds ``z_y - z_j`` (float64, 0 at j = y; NaN
    rows for violated samples, which were not bounded), whether float64 decided; and the
    counterexamples found, by sample index."""

    settings: VerifySettings
    verdicts: torch.Tensor
    margin_lower: torch.Tensor
    recomputed: torch.Tensor
    counterexample_indices: torch.Tensor
    counterexamples: torch.Tensor

    def counts(self) -> dict[str, int]:
        return {verdict.name.lower(): int((self.verdicts == verdict).sum()) for verdict in Verdict}

    @property
    def verified(self) -> torch.Tensor:
        return self.verdicts == Verdict.VERIFIED

    @property
    def violated(self) -> torch.Tensor:
        return self.verdicts == Verdict.VIOLATED


def _inside_ball(points: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """`points` moved into the exact ball around `x` within [0, 1], rounding inward."""
    wide, centre = points.to(torch.float64), x.to(torch.float64)
    lower, upper = (centre - eps).clamp(0, 1), (centre + eps).clamp(0, 1)
    narrow = torch.minimum(torch.maximum(wide, lower), upper).to(points.dtype)
    up, down = torch.full_like(narrow, 2.0), torch.full_like(narrow, -1.0)
    narrow = torch.where(narrow.to(torch.float64) < lower, torch.nextafter(narrow, up), narrow)
    return torch.where(narrow.to(torch.float64) > upper, torch.nextafter(narrow, down), narrow)


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def find_counterexamples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: VerifySettings, *,
                         skip: Optional[torch.Tensor] = None,
                         generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(found [N] bool, points [N, ...]): misclassified points inside the ball, re-checked on `model`
    in its own precision; the clean input first, then the attacks on what remains (not `skip`)."""
    with torch.no_grad():
        logits = model(x)
    found, num_classes = logits.argmax(1) != y, logits.shape[1]
    points = x.clone()
    todo = ~found if skip is None else ~found & ~skip
    if not settings.attack or settings.eps == 0:
        return found, points
    attacks = [lambda xs, ys: advcli.pgd(model, xs, ys, eps=settings.eps, steps=settings.attack_steps,
                                         restarts=settings.attack_restarts, clip=True, generator=generator)]
    for loss in ("ce", "dlr") if num_classes >= 3 else ("ce",):
        attacks.append(lambda xs, ys, loss=loss: advcli.apgd(
            model, xs, ys, eps=settings.eps, loss=loss, steps=settings.attack_steps,
            restarts=settings.attack_restarts, clip=True, generator=generator))
    for attack in attacks:
        index = todo.nonzero().squeeze(1)
        if index.numel() == 0:
            break
        candidates = _inside_ball(attack(x[index], y[index]), x[index], settings.eps)
        hit = _predict(model, candidates) != y[index]
        found[index[hit]], points[index[hit]], todo[index[hit]] = True, candidates[hit], False
    return found, points


def verify(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, settings: VerifySettings, *,
           generator: Optional[torch.Generator] = None, known_violated: Optional[torch.Tensor] = None,
           graph: Optional[BoundGraph] = None) -> VerificationResult:
    """Verdicts for the batch `x` (pixels in [0, 1]) with labels `y` under `settings`.

    `model` runs in eval mode throughout (its modes are restored afterwards); samples marked in
    `known_violated` (a counterexample is already known inside this ball) are reported violated
    without counterexample and without work."""
    settings.validate()
    if x.ndim < 2 or y.shape != (x.shape[0],):
        raise AdvcliError(
            f"verification needs a batch of inputs and one label each, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise AdvcliError("inputs must be pixel values in [0, 1] without NaN")
    root = model.root if isinstance(model, BoundGraph) else model
    graph = graph or build_graph(model, tuple(x.shape[1:]))
    modes = [(module, module.training) for module in root.modules()]
    root.eval()
    try:
        return _verify(root, graph, x, y, settings, generator, known_violated)
    finally:
        for module, training in modes:
            module.training = training


def _verify(model, graph, x, y, settings, generator, known_violated) -> VerificationResult:
    n = x.shape[0]
    known = torch.zeros(n, dtype=torch.bool, device=x.device) if known_violated is None else known_violated
    found, points = find_counterexamples(model, x, y, settings, skip=known, generator=generator)
    with torch.no_grad():
        logits = model(x)
        num_classes = logits.shape[1]
        scale = 1 + logits.abs().amax(1).to(torch.float64)
        verdicts = torch.full((n,), int(Verdict.UNPROVEN), dtype=torch.long, device=x.device)
        verdicts[found | known] = int(Verdict.VIOLATED)
        margins = torch.full((n, num_classes), math.nan, dtype=torch.float64, device=x.device)
        recomputed = torch.zeros(n, dtype=torch.bool, device=x.device)
        todo = (~found & ~known).nonzero().squeeze(1)
        if todo.numel():
            bounds = margin_bounds(graph, x[todo], y[todo], settings.eps, method=settings.method,
                                   intermediate=settings.intermediate, alpha_steps=settings.alpha_steps)
            margins[todo] = bounds.lower.to(torch.float64)
            worst = bounds.worst().to(torch.float64)
            verdicts[todo[worst > FLOAT32_MARGIN * scale[todo]]] = int(Verdict.VERIFIED)
            near = todo[(worst.abs() <= FLOAT32_MARGIN * scale[todo])]
            if near.numel():
                precise = margin_bounds(graph, x[near], y[near], settings.eps, method=settings.method,
                                        intermediate=settings.intermediate, dtype=torch.float64,
                                        alpha_steps=settings.alpha_steps)
                margins[near], recomputed[near] = precise.lower, True
                verdicts[near[precise.worst() > FLOAT64_MARGIN * scale[near]]] = int(Verdict.VERIFIED)
    index = found.nonzero().squeeze(1)
    return VerificationResult(settings, verdicts, margins, recomputed, index, points[index])


def verify_batch(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, eps: float, *,
                 method: str = "crown", intermediate: str = "crown", attack: bool = True,
                 generator: Optional[torch.Generator] = None, attack_steps: int = 50, attack_restarts: int = 1,
                 alpha_steps: int = 20) -> VerificationResult:
    """:func:`verify` with its settings given as keywords."""
    settings = VerifySettings(eps, method, intermediate, attack, attack_steps, attack_restarts, alpha_steps)
    return verify(model, x, y, settings, generator=generator)


def verify_eps_list(model: nn.Module | BoundGraph, x: torch.Tensor, y: torch.Tensor, eps_list: Sequence[float], *,
                    generator: Optional[torch.Generator] = None, **options) -> list[VerificationResult]:
    """One result per radius, smallest first: balls are nested, so a sample violated at one radius
    is reported violated at every larger one without more work (its counterexample is listed at
    the radius where it was found)."""
    radii = list(eps_list)
    if radii != sorted(radii):
        raise AdvcliError(f"eps values must be in increasing order, got {radii}")
    graph = build_graph(model, tuple(x.shape[1:]))
    known = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    results = []
    for eps in radii:
        settings = VerifySettings(eps, **options)
        result = verify(model, x, y, settings, generator=generator, known_violated=known, graph=graph)
        known = known | result.violated
        results.append(result)
    return results
