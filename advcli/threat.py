"""The threat model: a perturbation of at most `eps` in the L-inf or the L2 norm around a pixel-space
input in [0, 1], optionally kept inside [0, 1] (`clip`).

One :class:`ThreatModel` projects points onto the allowed set, takes steps, draws random starting
points and checks an attack's output, so attacks, training, evaluation and verification agree on
what the threat is. Norms and starting points are registries (:data:`NORMS`, :data:`INITS`).

This module works on tensors through their own methods and never imports torch itself: the command
line validates threat options without loading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Optional

from .errors import AttackError
from .registry import Registry

if TYPE_CHECKING:
    import torch

# float32 rounding of x + delta can exceed eps by a few ulps; anything larger is a real violation.
BOUND_TOLERANCE = 1e-5


def l2_norms(t: "torch.Tensor") -> "torch.Tensor":
    """Per-sample L2 norms of a batch, shaped (N, 1, 1, ...) for broadcasting."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def project_l2(delta: "torch.Tensor", eps: float) -> "torch.Tensor":
    """Shrink each sample's perturbation onto the L2 ball of radius `eps` (unchanged inside it)."""
    return delta * (eps / l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0)


@dataclass(frozen=True)
class Norm:
    """What a norm means for attacks: its ball's projection, the ascent direction of a gradient, the
    per-sample size of a perturbation, a uniform point of the ball, and the largest useful radius."""

    name: str
    project: Callable[["torch.Tensor", float], "torch.Tensor"]  # (delta, eps) -> delta inside the ball
    direction: Callable[["torch.Tensor"], "torch.Tensor"]  # gradient -> unit step
    sizes: Callable[["torch.Tensor"], "torch.Tensor"]  # delta (N, ...) -> (N,)
    uniform: Callable[["torch.Tensor", float, Optional["torch.Generator"]], "torch.Tensor"]  # (x, eps, gen) -> delta
    max_eps: Callable[[int], float]  # pixels per image -> radius that reaches every image
    slack: Callable[[float, int], float]  # (eps, pixels) -> float32 rounding allowed past eps


def _linf_uniform(x: "torch.Tensor", eps: float, generator: Optional["torch.Generator"]) -> "torch.Tensor":
    noise = x.new_empty(x.shape).uniform_(generator=generator)
    return eps * (2 * noise - 1)


def _l2_uniform(x: "torch.Tensor", eps: float, generator: Optional["torch.Generator"]) -> "torch.Tensor":
    """Uniform in the ball's volume: a Gaussian direction and radius eps·U^(1/d)."""
    direction = x.new_empty(x.shape).normal_(generator=generator)
    direction = direction / l2_norms(direction).clamp_min(1e-12)
    u = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).uniform_(generator=generator)
    return eps * u.pow(1.0 / max(x[0].numel(), 1)) * direction


NORMS: Registry[Norm] = Registry("norm", param="norm", error=AttackError, entries={
    "linf": Norm(
        "linf", project=lambda delta, eps: delta.clamp(-eps, eps), direction=lambda grad: grad.sign(),
        sizes=lambda delta: delta.flatten(1).abs().amax(1), uniform=_linf_uniform, max_eps=lambda pixels: 1.0,
        slack=lambda eps, pixels: BOUND_TOLERANCE,
    ),
    "l2": Norm(
        "l2", project=project_l2, direction=lambda grad: grad / l2_norms(grad).clamp_min(1e-12),
        sizes=lambda delta: l2_norms(delta).flatten(), uniform=_l2_uniform, max_eps=math.sqrt,
        # a few ulps per pixel, which add up under L2 (at most sqrt(pixels) of them)
        slack=lambda eps, pixels: BOUND_TOLERANCE * max(1.0, eps) + 1.2e-7 * math.sqrt(pixels),
    ),
}, order=("linf", "l2"))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ThreatModel:
    """Perturbations of size at most `eps` in `norm`; with `clip`, adversarial inputs stay in [0, 1]."""

    eps: float
    norm: str = "linf"
    clip: bool = True

    def __post_init__(self) -> None:
        NORMS.check(self.norm)
        if not _is_number(self.eps) or math.isnan(self.eps) or self.eps < 0:
            raise AttackError(f"`eps` must be a number >= 0, got {self.eps}", param="eps")
        if not math.isfinite(self.eps):
            raise AttackError(f"`eps` must be finite, got {self.eps}", param="eps")
        if self.norm == "linf" and self.eps > 1:
            raise AttackError(f"`eps` must be <= 1 for inputs in [0, 1], got {self.eps}", param="eps")

    @property
    def geometry(self) -> Norm:
        return NORMS.get(self.norm)

    def at(self, eps: float) -> "ThreatModel":
        """The same threat at another radius."""
        return replace(self, eps=eps)

    def project(self, x: "torch.Tensor", point: "torch.Tensor") -> "torch.Tensor":
        """`point` moved onto the eps-ball around `x` (and into [0, 1] with `clip`)."""
        moved = x + self.geometry.project(point - x, self.eps)
        return moved.clamp(0, 1) if self.clip else moved

    def step(self, x: "torch.Tensor", x_adv: "torch.Tensor", grad: "torch.Tensor", alpha: "float | torch.Tensor"
             ) -> "torch.Tensor":
        """One ascent step of size `alpha` from `x_adv` along `grad` (signed under L-inf, normalised
        under L2; a zero gradient gives no step), projected back."""
        return self.project(x, x_adv + alpha * self.geometry.direction(grad))

    def random_point(self, x: "torch.Tensor", generator: Optional["torch.Generator"] = None) -> "torch.Tensor":
        """A uniform random point of the eps-ball around `x` (and inside [0, 1] with `clip`)."""
        start = x + self.geometry.uniform(x, self.eps, generator)
        return start.clamp(0, 1) if self.clip else start

    def start(self, x: "torch.Tensor", init: str, generator: Optional["torch.Generator"] = None) -> "torch.Tensor":
        """The starting point `init` names (:data:`INITS`)."""
        return INITS.get(init)(self, x, generator)

    def sizes(self, x: "torch.Tensor", x_adv: "torch.Tensor") -> "torch.Tensor":
        """Per-sample size of `x_adv - x` in the norm."""
        return self.geometry.sizes(x_adv - x)

    def unbounded_eps(self, pixels: int) -> float:
        """A radius that reaches every image of `pixels` values: 1 under L-inf, the diagonal under L2."""
        return self.geometry.max_eps(pixels)

    def check(self, x: "torch.Tensor", x_adv: "torch.Tensor", who: str) -> float:
        """Verify `who`'s output before it is counted; returns the largest perturbation in the norm."""
        if x_adv.shape != x.shape:
            raise AttackError(f"{who} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
        if not bool(x_adv.isfinite().all()):
            raise AttackError(f"{who} produced NaN or infinite pixels; the result is not reported")
        if not x.numel():
            return 0.0
        largest = float(self.sizes(x, x_adv).max())
        if largest > self.eps + self.geometry.slack(self.eps, x[0].numel()):
            raise AttackError(f"{who} left the eps-ball: |delta|_{self.norm} = {largest:.6g} > eps = {self.eps}")
        if self.clip and (float(x_adv.min()) < 0 or float(x_adv.max()) > 1):
            raise AttackError(f"{who} produced pixels outside [0, 1]")
        return largest


INITS: Registry[Callable[[ThreatModel, "torch.Tensor", Optional["torch.Generator"]], "torch.Tensor"]] = Registry(
    "start", param="init", order=("zero", "random"), error=AttackError, entries={
        "zero": lambda threat, x, generator: x.clone(),
        "random": lambda threat, x, generator: threat.random_point(x, generator),
    })
