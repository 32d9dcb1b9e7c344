"""Square attack (Andriushchenko et al., 2020), L-inf and L2, score-based black box.

Needs only a function from a batch of pixel-space inputs to logits, so it attacks a torch model,
an onnxruntime session or anything else the same way. Each sample spends at most `queries`
model queries (the initial point counts as one); samples stop as soon as they are misclassified.
Each query tries a random change confined to square windows and keeps it when it lowers the margin
of the true class:

* L-inf: start from vertical stripes of +-eps; each change sets a square (one sign per channel)
  to +-eps.
* L2: start from a grid of windows each holding a signed "meta pseudo-Gaussian" bump (nested
  rectangles weighted 1/k², with opposite signs in its two halves), scaled to norm eps; each change
  moves the perturbation's mass in a second window into the first and adds a fresh signed bump
  there, using any unspent budget, and the whole perturbation is rescaled to norm eps.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ...errors import AttackError
from ...threat import ThreatModel, l2_norms
from ..core import validate_attack_args

LogitsFn = Callable[[torch.Tensor], torch.Tensor]

# Fraction of the image a square covers, halved at these shares of a 10,000-query schedule.
_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256))


def square_size_fraction(p_init: float, iteration: int, queries: int) -> float:
    """The square's share of the image at `iteration`, rescaled to a budget of `queries`."""
    scaled = int(iteration / max(queries, 1) * 10000)
    divisor = 512
    for bound, div in _SCHEDULE:
        if scaled <= bound:
            divisor = div
            break
    return p_init / divisor


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the largest other logit: negative means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.clone()
    others.scatter_(1, y[:, None], float("-inf"))
    return true - others.max(1).values


class _Draws:
    """The attack's random draws, made where the generator lives (a CUDA generator cannot fill
    CPU tensors) and moved to the inputs' device."""

    def __init__(self, generator: Optional[torch.Generator], device: torch.device, dtype: torch.dtype) -> None:
        self.generator = generator
        self.draw_device = generator.device if generator is not None else device
        self.device, self.dtype = device, dtype

    def signs(self, shape: tuple[int, ...]) -> torch.Tensor:
        signs = torch.randint(0, 2, shape, generator=self.generator, device=self.draw_device)
        return signs.to(self.device, self.dtype).mul_(2).sub_(1)

    def position(self, limit: int) -> int:
        return int(torch.randint(0, limit, (1,), generator=self.generator, device=self.draw_device))

    def coin(self) -> bool:
        return bool(torch.rand((1,), generator=self.generator, device=self.draw_device) > 0.5)


def _rectangles(rows: int, cols: int) -> torch.Tensor:
    """Centred nested rectangles growing by one pixel a side, the k-th weighted 1/k², unit norm."""
    bump = torch.zeros(rows, cols, dtype=torch.float64)
    top, left = rows // 2, cols // 2
    for k in range(max(rows // 2 + 1, cols // 2 + 1)):
        bump[max(top, 0):min(top + 2 * k + 1, rows), max(left, 0):min(left + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
        top, left = top - 1, left - 1
    return bump / bump.norm().clamp_min(1e-12)


def meta_pseudo_gaussian(side: int) -> torch.Tensor:
    """The L2 Square attack's window pattern: rectangles in the top half, minus rectangles in the
    bottom half, unit L2 norm (side x side, float64)."""
    bump = torch.zeros(side, side, dtype=torch.float64)
    bump[: side // 2] = _rectangles(side // 2, side)
    bump[side // 2:] = -_rectangles(side - side // 2, side)
    return bump / bump.norm().clamp_min(1e-12)


def _linf_square_side(fraction: float, height: int, width: int) -> int:
    return max(1, min(height, width, int(round(math.sqrt(fraction * height * width)))))


def l2_square_side(fraction: float, height: int, width: int) -> int:
    """The L2 attack's window side for a share `fraction` of the image: at least 3 and odd (even
    sides are rounded up, as in the paper), so the bump has a centre pixel; on images too small
    for that, the largest odd side that fits."""
    side = max(int(round(math.sqrt(fraction * height * width))), 3)
    side += 1 - side % 2
    shorter = min(height, width)
    return side if side <= shorter else max(shorter - (1 - shorter % 2), 1)


def _linf_start(x: torch.Tensor, eps: float, draws: _Draws) -> torch.Tensor:
    """Vertical stripes of +-eps, the paper's initialisation."""
    n, channels, _, width = x.shape
    return x + eps * draws.signs((n, channels, 1, width))


def _linf_candidate(x: torch.Tensor, x_best: torch.Tensor, eps: float, fraction: float, draws: _Draws,
                    low: float, high: float) -> torch.Tensor:
    """Set one random square of the perturbation to +-eps (a sign per sample and channel)."""
    n, channels, height, width = x.shape
    side = _linf_square_side(fraction, height, width)
    top, left = draws.position(height - side + 1), draws.position(width - side + 1)
    delta = x_best - x
    window = delta[:, :, top:top + side, left:left + side]
    # Redraw the square's signs where they would not change the point (the paper does the same).
    for _ in range(10):
        proposal = eps * draws.signs((n, channels, 1, 1))
        unchanged = ((x[:, :, top:top + side, left:left + side] + proposal).clamp(low, high)
                     - x_best[:, :, top:top + side, left:left + side]).abs().amax(dim=(1, 2, 3)) < 1e-7
        window = torch.where(unchanged[:, None, None, None], window, proposal.expand_as(window))
        if not bool(unchanged.any()):
            break
    delta = delta.clone()
    delta[:, :, top:top + side, left:left + side] = window
    return x + delta.clamp(-eps, eps)


def _l2_start(x: torch.Tensor, eps: float, draws: _Draws) -> torch.Tensor:
    """A grid of windows (a fifth of the shorter side each), each a signed pseudo-Gaussian bump
    per channel, scaled to norm eps."""
    n, channels, height, width = x.shape
    side = max(min(height, width) // 5, 1)
    bump = meta_pseudo_gaussian(side).to(x.device, x.dtype)
    delta = torch.zeros_like(x)
    for top in range(max((height - 5 * side) // 2, 0), height - side + 1, side):
        for left in range(max((width - 5 * side) // 2, 0), width - side + 1, side):
            pattern = bump.t() if draws.coin() else bump
            delta[:, :, top:top + side, left:left + side] += pattern * draws.signs((n, channels, 1, 1))
    return x + eps * delta / (l2_norms(delta) + 1e-12)


def _l2_candidate(x: torch.Tensor, x_best: torch.Tensor, eps: float, fraction: float, draws: _Draws,
                  low: float, high: float) -> torch.Tensor:
    """Move the perturbation's mass in a second window into a first one, add a fresh signed bump
    there with any unspent budget, and rescale the whole perturbation to norm eps."""
    n, channels, height, width = x.shape
    side = l2_square_side(fraction, height, width)
    top, left = draws.position(height - side + 1), draws.position(width - side + 1)
    top2, left2 = draws.position(height - side + 1), draws.position(width - side + 1)
    first = (slice(top, top + side), slice(left, left + side))
    second = (slice(top2, top2 + side), slice(left2, left2 + side))
    delta = x_best - x
    window = delta[:, :, first[0], first[1]]
    window_norms = window.flatten(2).norm(dim=2)[:, :, None, None]
    mask = torch.zeros_like(delta[:1])
    mask[:, :, first[0], first[1]] = 1
    mask[:, :, second[0], second[1]] = 1
    in_windows = l2_norms(delta * mask)
    spare = (eps ** 2 - l2_norms(delta) ** 2).clamp_min(0)
    bump = meta_pseudo_gaussian(side).to(x.device, x.dtype)
    if draws.coin():
        bump = bump.t()
    new = bump * draws.signs((n, channels, 1, 1)) + window / (window_norms + 1e-12)
    new = new / (new.flatten(2).norm(dim=2)[:, :, None, None] + 1e-12) * (spare / channels + in_windows ** 2).sqrt()
    delta = delta.clone()
    delta[:, :, second[0], second[1]] = 0
    delta[:, :, first[0], first[1]] = new
    return x + eps * delta / (l2_norms(delta) + 1e-12)


# Per norm: the starting point and the change each query tries (both before clipping to [0, 1]).
StartFn = Callable[[torch.Tensor, float, _Draws], torch.Tensor]
CandidateFn = Callable[[torch.Tensor, torch.Tensor, float, float, _Draws, float, float], torch.Tensor]
SQUARE_NORMS: dict[str, tuple[StartFn, CandidateFn]] = {
    "linf": (_linf_start, _linf_candidate),
    "l2": (_l2_start, _l2_candidate),
}


@torch.no_grad()
def square_attack(
    logits_fn: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    queries: int = 1000,
    p_init: float = 0.8,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the Square attack in the L-inf or the L2 `norm`; returns the adversarial inputs and the
    queries each sample used."""
    if not isinstance(queries, int) or isinstance(queries, bool) or queries < 1:
        raise AttackError(f"`queries` must be an integer >= 1, got {queries}", param="queries")
    validate_attack_args(threat=ThreatModel(eps, norm, clip), alpha=1.0, iters=queries, init="random")  # no step size
    if not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
        raise AttackError(f"`p_init` must be in (0, 1], got {p_init}", param="p_init")
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise AttackError(f"square attack needs images (N, C, H, W) and labels (N,), got {tuple(x.shape)}, {tuple(y.shape)}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise AttackError("inputs must be pixel values in [0, 1] without NaN")
    used = torch.zeros(x.shape[0], dtype=torch.long)
    if eps == 0 or x.shape[0] == 0:
        return x.clone(), used
    low, high = (0.0, 1.0) if clip else (-math.inf, math.inf)
    draws = _Draws(generator, x.device, x.dtype)
    start, propose = SQUARE_NORMS[norm]

    x_best = start(x, eps, draws).clamp(low, high)
    best_margin = margin(logits_fn(x_best), y)
    used += 1
    for iteration in range(1, queries):
        active = (best_margin > 0).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        # The schedule runs over the tries after the initial point, the first at p_init (as in the paper).
        fraction = square_size_fraction(p_init, iteration - 1, queries - 1)
        candidate = propose(x[active], x_best[active], eps, fraction, draws, low, high).clamp(low, high)
        candidate_margin = margin(logits_fn(candidate), y[active])
        used[active.cpu()] += 1
        better = candidate_margin < best_margin[active]
        x_best[active[better]] = candidate[better]
        best_margin[active[better]] = candidate_margin[better]
    return x_best, used
