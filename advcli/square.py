"""Square attack (Andriushchenko et al., 2020), L-inf, score-based black box.

Needs only a function from a batch of pixel-space inputs to logits, so it attacks a torch model,
an onnxruntime session or anything else the same way. Each sample spends at most `queries`
model queries (the initial point counts as one); samples stop as soon as they are misclassified.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .attacks import attack_mode, validate_attack_args
from .errors import AttackError

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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the L-inf Square attack; returns the adversarial inputs and the queries each sample used."""
    if not isinstance(queries, int) or isinstance(queries, bool) or queries < 1:
        raise AttackError(f"queries must be an integer >= 1, got {queries}")
    validate_attack_args(eps=eps, alpha=1.0, steps=queries)  # no step size in Square
    if not isinstance(p_init, (int, float)) or not 0 < p_init <= 1:
        raise AttackError(f"p_init must be in (0, 1], got {p_init}")
    if x.ndim != 4 or y.shape != (x.shape[0],):
        raise AttackError(f"square attack needs images (N, C, H, W) and labels (N,), got {tuple(x.shape)}, {tuple(y.shape)}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise AttackError("inputs must be pixel values in [0, 1] without NaN")
    used = torch.zeros(x.shape[0], dtype=torch.long)
    if eps == 0 or x.shape[0] == 0:
        return x.clone(), used
    n, channels, height, width = x.shape
    low, high = (0.0, 1.0) if clip else (-math.inf, math.inf)
    # Random draws happen where the generator lives (a CUDA generator cannot fill CPU tensors).
    draw_device = generator.device if generator is not None else x.device

    def sign_like(shape: tuple[int, ...]) -> torch.Tensor:
        signs = torch.randint(0, 2, shape, generator=generator, device=draw_device)
        return signs.to(x.device, x.dtype).mul_(2).sub_(1)

    def position(limit: int) -> int:
        return int(torch.randint(0, limit, (1,), generator=generator, device=draw_device))

    # Start from vertical stripes of +-eps, the paper's initialisation.
    x_best = (x + eps * sign_like((n, channels, 1, width))).clamp(low, high)
    best_margin = margin(logits_fn(x_best), y)
    used += 1
    for iteration in range(1, queries):
        active = (best_margin > 0).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        fraction = square_size_fraction(p_init, iteration, queries)
        side = max(1, min(height, width, int(round(math.sqrt(fraction * height * width)))))
        top, left = position(height - side + 1), position(width - side + 1)
        x_act, x_best_act = x[active], x_best[active]
        delta = x_best_act - x_act
        window = delta[:, :, top:top + side, left:left + side]
        # Redraw the square's signs where they would not change the point (the paper does the same).
        for _ in range(10):
            proposal = eps * sign_like((active.numel(), channels, 1, 1))
            unchanged = ((x_act[:, :, top:top + side, left:left + side] + proposal).clamp(low, high)
                         - x_best_act[:, :, top:top + side, left:left + side]).abs().amax(dim=(1, 2, 3)) < 1e-7
            window = torch.where(unchanged[:, None, None, None], window, proposal.expand_as(window))
            if not bool(unchanged.any()):
                break
        delta = delta.clone()
        delta[:, :, top:top + side, left:left + side] = window
        candidate = (x_act + delta.clamp(-eps, eps)).clamp(low, high)
        candidate_margin = margin(logits_fn(candidate), y[active])
        used[active.cpu()] += 1
        better = candidate_margin < best_margin[active]
        x_best[active[better]] = candidate[better]
        best_margin[active[better]] = candidate_margin[better]
    return x_best, used


def torch_logits(model: torch.nn.Module) -> LogitsFn:
    """Wrap a torch model as the logits function the attack queries.

    Each query runs in eval mode with frozen parameters; the model's own mode is left as it was.
    """

    @torch.no_grad()
    def logits(x: torch.Tensor) -> torch.Tensor:
        with attack_mode(model):
            return model(x).float()

    return logits
