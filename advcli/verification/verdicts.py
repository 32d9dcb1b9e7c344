"""Verdicts per sample, as MATLAB's verifyNetworkRobustness gives them, at one or several radii.

* ``violated``: a concrete input inside the ball (within [0, 1]) that the model misclassifies was
  found: the sample itself when its clean prediction is wrong (at any eps, 0 included), else an
  adversarial example of one of the configured attacks, run through advcli's attack engine (which
  re-checks and re-classifies it), moved into the exact ball in float64 and classified once more;
* ``verified``: every margin lower bound is positive, by more than the rounding of the bound
  computation: above 2^-10 (1 + max |logit|) in float32; samples within that band of 0 are
  recomputed in float64 and verified only above 2^-16 (1 + max |logit|), which also covers the
  float32 model's own rounding of its logits;
* ``unproven``: neither.

At each radius the first attack runs before the bounds (it finds the easy counterexamples cheaply),
the bounds run on what it left, and the other attacks only on the samples still unproven: a
verified sample withstands every attack, so the attacks' robust accuracy is the same as if they had
run on every sample. Radii are taken in increasing order; a sample violated at one radius is
violated at every larger one (the balls are nested) without more work.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Callable, Optional

import torch
from torch import nn

from ..attacks.config import AttackConfig
from ..errors import AdvcliError
from ..evaluation.engine import attack_samples, clean_predictions
from ..runtime.execution import attack_mode
from ..runtime.victim import Victim
from .bounds import margin_bounds
from .config import VerifyConfig
from .graph import BoundGraph, build_graph

FLOAT32_MARGIN = 2.0 ** -10
FLOAT64_MARGIN = 2.0 ** -16
CLEAN_ERROR = 0  # `violated_by` of a sample its clean prediction already gets wrong; attack i is i + 1
NOT_VIOLATED = -1

Progress = Callable[[str, int, int], None]


class Verdict(IntEnum):
    UNPROVEN = 0
    VERIFIED = 1
    VIOLATED = 2


@dataclass
class VerificationResult:
    """One radius. Per sample (CPU tensors): the verdict code; the margin lower bounds ``z_y - z_j``
    (float64, 0 at j = y; NaN rows for samples that were not bounded because they were violated
    first); whether float64 decided; what violated it (:data:`NOT_VIOLATED`, :data:`CLEAN_ERROR`,
    or 1 + the index of the attack, here or at a smaller radius). Also the counterexamples found at
    this radius, by sample index, and the seconds spent attacking and bounding."""

    eps: float
    verdicts: torch.Tensor
    margin_lower: torch.Tensor
    recomputed: torch.Tensor
    violated_by: torch.Tensor
    counterexample_indices: torch.Tensor
    counterexamples: torch.Tensor
    attack_seconds: float = 0.0
    bound_seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return {verdict.name.lower(): int((self.verdicts == verdict).sum()) for verdict in Verdict}

    @property
    def verified(self) -> torch.Tensor:
        return self.verdicts == Verdict.VERIFIED

    @property
    def violated(self) -> torch.Tensor:
        return self.verdicts == Verdict.VIOLATED

    @property
    def unproven(self) -> torch.Tensor:
        return self.verdicts == Verdict.UNPROVEN

    def worst_margin(self, labels: torch.Tensor) -> torch.Tensor:
        """Per sample, the smallest margin lower bound over the other classes (NaN where not bounded)."""
        return self.margin_lower.scatter(1, labels[:, None].to(torch.long), math.inf).min(1).values


def _inside_ball(points: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """`points` moved into the exact ball around `x` within [0, 1], rounding inward."""
    wide, centre = points.to(torch.float64), x.to(torch.float64)
    lower, upper = (centre - eps).clamp(0, 1), (centre + eps).clamp(0, 1)
    narrow = torch.minimum(torch.maximum(wide, lower), upper).to(points.dtype)
    up, down = torch.full_like(narrow, 2.0), torch.full_like(narrow, -1.0)
    narrow = torch.where(narrow.to(torch.float64) < lower, torch.nextafter(narrow, up), narrow)
    return torch.where(narrow.to(torch.float64) > upper, torch.nextafter(narrow, down), narrow)


@dataclass
class _Job:
    """What every radius of one verification shares."""

    victim: Victim
    graph: BoundGraph
    x: torch.Tensor  # CPU
    y: torch.Tensor  # CPU
    config: VerifyConfig
    num_classes: int
    on_progress: Optional[Progress]

    def follow(self, stage: str, total: int) -> Optional[Callable[[int], None]]:
        """``on_progress(done)`` for `stage`, as the attack engine and the bounds report it (None:
        nobody follows)."""
        on_progress = self.on_progress
        if on_progress is None:
            return None
        return lambda done: on_progress(stage, done, total)


def _counterexamples(job: _Job, attack: AttackConfig, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows among `rows` for which `attack` found a misclassified point of the exact ball, and the points."""
    if len(rows) == 0:
        return rows, job.x.new_empty((0, *job.x.shape[1:]))
    batch_size = job.config.runtime.batch_size
    outcome = attack_samples(job.victim, job.x, job.y, attack, rows=rows, num_classes=job.num_classes,
                             batch_size=batch_size, seed=job.config.sampling.seed, keep_adversarials=True,
                             on_progress=job.follow(f"{attack.name} eps={attack.eps:g}", len(rows)))
    hit = outcome.fooled_by >= 0
    candidates, found = outcome.adversarials[hit], rows[hit]
    points = _inside_ball(candidates, job.x[found], attack.eps)
    wrong = clean_predictions(job.victim, points, batch_size=batch_size) != job.y[found]
    return found[wrong], points[wrong]


def _bound(job: _Job, eps: float, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For `rows`: verified (bool), margin lower bounds (float64) and whether float64 decided."""
    bounds, batch_size = job.config.bounds, job.config.runtime.batch_size
    device = job.victim.device
    verified = torch.zeros(len(rows), dtype=torch.bool)
    margins = torch.zeros(len(rows), job.num_classes, dtype=torch.float64)
    recomputed = torch.zeros(len(rows), dtype=torch.bool)
    report = job.follow(f"{bounds.method} bounds eps={eps:g}", len(rows))
    options = dict(method=bounds.method, intermediate=bounds.resolved_intermediate, alpha_steps=bounds.alpha_steps)
    for start in range(0, len(rows), batch_size):
        chosen = slice(start, start + batch_size)
        xb, yb = job.x[rows[chosen]].to(device), job.y[rows[chosen]].to(device)
        with torch.no_grad():
            scale = (1 + job.graph.root(xb).abs().amax(1)).to(torch.float64).cpu()
            found = margin_bounds(job.graph, xb, yb, eps, **options)
            worst = found.worst().to(torch.float64).cpu()
            margins[chosen] = found.lower.to(torch.float64).cpu()
            verified[chosen] = worst > FLOAT32_MARGIN * scale
            near = (worst.abs() <= FLOAT32_MARGIN * scale).nonzero().squeeze(1)
            if near.numel():
                precise = margin_bounds(job.graph, xb[near.to(device)], yb[near.to(device)], eps,
                                        dtype=torch.float64, **options)
                margins[start + near] = precise.lower.cpu()
                recomputed[start + near] = True
                verified[start + near] = precise.worst().cpu() > FLOAT64_MARGIN * scale[near]
        if report is not None:
            report(start + len(xb))
    return verified, margins, recomputed


def _one_radius(job: _Job, eps: float, violated_by: torch.Tensor) -> VerificationResult:
    """Verdicts at `eps`, given what was violated at smaller radii (`violated_by`, updated in place)."""
    attacks = job.config.resolved_attacks(eps)
    found_rows, found_points, attack_seconds = [], [], 0.0

    def attack(position: int, rows: torch.Tensor) -> None:
        nonlocal attack_seconds
        started = time.perf_counter()
        found, points = _counterexamples(job, attacks[position], rows)
        violated_by[found] = position + 1
        found_rows.append(found)
        found_points.append(points)
        attack_seconds += time.perf_counter() - started

    if attacks:
        attack(0, (violated_by == NOT_VIOLATED).nonzero().squeeze(1))
    rows = (violated_by == NOT_VIOLATED).nonzero().squeeze(1)
    started = time.perf_counter()
    verified, margins, recomputed = _bound(job, eps, rows)
    bound_seconds = time.perf_counter() - started
    for position in range(1, len(attacks)):
        unproven = rows[~verified]
        attack(position, unproven[violated_by[unproven] == NOT_VIOLATED])
    n = len(job.x)
    verdicts = torch.full((n,), int(Verdict.UNPROVEN), dtype=torch.long)
    verdicts[rows[verified]] = int(Verdict.VERIFIED)
    verdicts[violated_by != NOT_VIOLATED] = int(Verdict.VIOLATED)
    margin_lower = torch.full((n, job.num_classes), math.nan, dtype=torch.float64)
    margin_lower[rows] = margins
    was_recomputed = torch.zeros(n, dtype=torch.bool)
    was_recomputed[rows] = recomputed
    index = torch.cat(found_rows) if found_rows else torch.empty(0, dtype=torch.long)
    points = torch.cat(found_points) if found_points else job.x.new_empty((0, *job.x.shape[1:]))
    order = index.argsort()
    return VerificationResult(eps, verdicts, margin_lower, was_recomputed, violated_by.clone(), index[order],
                              points[order], attack_seconds, bound_seconds)


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim < 2 or y.shape != (x.shape[0],):
        raise AdvcliError(f"verification needs a batch of inputs and one label each, got {tuple(x.shape)} and "
                          f"{tuple(y.shape)}", param="x")
    if x.numel() and (bool(torch.isnan(x).any()) or float(x.min()) < 0 or float(x.max()) > 1):
        raise AdvcliError("inputs must be pixel values in [0, 1] without NaN", param="x")


def verify_radii(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: Optional[VerifyConfig] = None, *,
                 judge: Optional[nn.Module] = None, on_progress: Optional[Progress] = None,
                 **overrides) -> list[VerificationResult]:
    """Verdicts of `model` (a torch module, or a torch.fx GraphModule of standard layers) for the
    batch `x` (pixels in [0, 1]) with labels `y`, one result per radius of `config` (flat settings
    in `overrides`), smallest first. `judge` (default: `model`) decides every clean prediction and
    counterexample: onnxruntime on an ONNX file whose conversion `model` is. The model runs in eval
    mode; its modes are restored afterwards. `on_progress(stage, done, total)` is called after every batch."""
    config = (config or VerifyConfig()).with_flat(**overrides)
    config.validate()
    _check_batch(x, y)
    x, y = x.detach().cpu(), y.detach().cpu().to(torch.long)
    with attack_mode(model):
        graph = build_graph(model, tuple(x.shape[1:]))
        precision = config.runtime.precision
        victim = Victim.of(model, precision=precision) if judge is None else Victim.converted(
            judge, model, precision=precision)
        job = _Job(victim, graph, x, y, config, graph.nodes[graph.output].shape[0], on_progress)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= job.num_classes):
            raise AdvcliError(f"labels must be classes in [0, {job.num_classes})", param="y")
        with attack_mode(victim.judge):
            clean = clean_predictions(victim, x, batch_size=config.runtime.batch_size) == y
            violated_by = torch.where(clean, NOT_VIOLATED, CLEAN_ERROR)
            return [_one_radius(job, eps, violated_by) for eps in config.eps_values()]


def verify_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, **settings) -> VerificationResult:
    """:func:`verify_radii` at the one radius `eps` (other flat settings by name, e.g. ``method="ibp"``,
    ``attacks=()`` for bounds only)."""
    return verify_radii(model, x, y, VerifyConfig.of(eps=eps, **settings))[0]
