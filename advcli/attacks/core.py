"""Attack primitives shared by every attack; this module imports no attack.

Gradients are taken with ``torch.autograd.grad`` on the input only, with the model in ``eval()``
mode and its parameters frozen for the duration of the attack (:func:`advcli.runtime.attack_mode`).
A targeted attack (``target`` = a tensor of classes) minimises the loss of the target class and
succeeds when the prediction equals the target; otherwise success means misclassification.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AttackError
from ..runtime.autocast import deciding_model, reference_model
from ..runtime.execution import by_chunks, predict
from ..threat import INITS, ThreatModel


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_attack_args(*, threat: ThreatModel, alpha: float, iters: int, restarts: int = 1,
                         init: str = "zero") -> None:
    """Reject impossible attack parameters before any work is done."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or math.isnan(alpha) or alpha < 0 \
            or (alpha == 0 and threat.eps > 0):
        raise AttackError(f"`alpha` (step size) must be > 0, got {alpha}", param="alpha")
    if not math.isfinite(alpha):
        raise AttackError(f"`alpha` (step size) must be finite, got {alpha}", param="alpha")
    if not _is_count(iters) or iters < 1:
        raise AttackError(f"`iters` must be an integer >= 1, got {iters}", param="iters")
    if not _is_count(restarts) or restarts < 1:
        raise AttackError(f"`restarts` must be an integer >= 1, got {restarts}", param="restarts")
    INITS.check(init)
    if restarts > 1 and init != "random":
        raise AttackError("`restarts` > 1 need `init` random: identical zero starts give identical results",
                          param="restarts")


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    """Inputs must be a batch of pixel images in [0, 1] with one label each."""
    if x.ndim != 4:
        raise AttackError(f"inputs must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise AttackError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise AttackError("inputs must be pixel values in [0, 1] without NaN")


def check_targets(y: torch.Tensor, target: Optional[torch.Tensor]) -> None:
    if target is None:
        return
    if target.shape != y.shape:
        raise AttackError(f"targets must have the labels' shape {tuple(y.shape)}, got {tuple(target.shape)}")
    same = int((target == y).sum())
    if same:
        raise AttackError(f"the target class equals the true label for {same} samples; nothing to attack there")


def renamed_arguments(function: Callable[..., Any]) -> Callable[..., Any]:
    """Accept the names attacks took before the vocabulary was unified, with a DeprecationWarning:
    ``steps`` (now ``iters``) and ``random_start`` (now ``init="random"|"zero"``)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "steps" in kwargs:
            warnings.warn(f"{function.__name__}(steps=...) is deprecated; use iters=", DeprecationWarning, stacklevel=2)
            kwargs["iters"] = kwargs.pop("steps")
        if "random_start" in kwargs:
            warnings.warn(f"{function.__name__}(random_start=...) is deprecated; use init='random' or 'zero'",
                          DeprecationWarning, stacklevel=2)
            kwargs["init"] = "random" if kwargs.pop("random_start") else "zero"
        return function(*args, **kwargs)

    return wrapper


def input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient with respect to `x` of the summed cross-entropy (or, with `target`, of minus the
    target class's cross-entropy: ascending it moves towards the target), and the logits at `x`."""
    return by_chunks(lambda xs, ys, ts: _input_gradient(model, xs, ys, ts), x, y, target)


def _input_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        if target is None:
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
        else:
            loss = -F.cross_entropy(logits.float(), target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def success_score(pred: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per sample: 2 the attack succeeded (misclassified; with `target`, on the target class),
    1 misclassified but not (yet) on the target, 0 still correct. Attacks keep the highest."""
    wrong = (pred != y).long()
    if target is None:
        return 2 * wrong
    return wrong + (pred == target).long()


def judged_scores(
    model: nn.Module, points: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
    target: Optional[torch.Tensor], best: torch.Tensor,
) -> torch.Tensor:
    """:func:`success_score` of `points` from `logits`, `model`'s outputs at them. When `model`
    crafts in reduced precision (:class:`advcli.runtime.Autocast`), every score above `best` is
    confirmed by its float32 reference first, so a sample stops early, or keeps a point, only
    when the model that judges would agree."""
    score = success_score(logits.argmax(1), y, target)
    reference = reference_model(model)
    if reference is not None:
        claimed = (score > best).nonzero().squeeze(1)
        if claimed.numel():
            score[claimed] = success_score(predict(reference, points[claimed]), y[claimed],
                                           None if target is None else target[claimed])
    return score


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    threat: ThreatModel,
    *,
    alpha: float,
    iters: int,
    init: str,
    generator: Optional[torch.Generator] = None,
    early_stop: bool = False,
    target: Optional[torch.Tensor] = None,
    start: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """`iters` gradient steps of size `alpha` (signed for L-inf, normalised for L2) from the start
    `init` names (or from the given `start` point, e.g. one drawn per sample), in the model's
    current mode.

    With `early_stop`, a sample stops moving once the attack succeeds on it, which keeps the
    first successful point found and saves its remaining gradient computations; a targeted attack
    that only reaches a wrong class keeps the first misclassified point (see :func:`success_score`).
    Used as is by adversarial training (model in train mode); attacks call it through ``pgd``.
    Samples are gathered and scattered only once some have stopped.
    """
    x = x.detach()
    x_adv = threat.start(x, init, generator) if start is None else start.detach()
    everyone = torch.arange(x.shape[0], device=x.device)
    best, best_score = x_adv.clone(), torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    active: Optional[torch.Tensor] = None  # the samples still moving; None: all of them
    for _ in range(iters):
        if active is None:
            indices, x_active, x_start, y_active, t_active = everyone, x_adv, x, y, target
        else:
            indices, x_active, x_start, y_active = active, x_adv[active], x[active], y[active]
            t_active = None if target is None else target[active]
        grad, logits = input_gradient(model, x_active, y_active, target=t_active)
        if early_stop:
            score = judged_scores(model, x_active, logits, y_active, t_active, best_score[indices])
            improved = score > best_score[indices]
            best[indices[improved]] = x_active[improved]
            best_score[indices[improved]] = score[improved]
            moving = score < 2
            if not bool(moving.all()):
                active, x_active, x_start, grad = indices[moving], x_active[moving], x_start[moving], grad[moving]
                if active.numel() == 0:
                    break
        moved = threat.step(x_start, x_active, grad, alpha)
        if active is None:
            x_adv = moved
        else:
            x_adv[active] = moved
    if not early_stop:
        return x_adv
    remaining = everyone if active is None else active
    if target is not None and remaining.numel():
        # The last step's points were never checked; a targeted attack may prefer them.
        with torch.no_grad():
            score = success_score(deciding_model(model)(x_adv[remaining]).argmax(1), y[remaining], target[remaining])
        improved = score > best_score[remaining]
        best[remaining[improved]] = x_adv[remaining[improved]]
        best_score[remaining[improved]] = score[improved]
    unsuccessful = best_score == 0
    best[unsuccessful] = x_adv[unsuccessful]
    return best


def best_of_restarts(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    target: Optional[torch.Tensor],
    restarts: int,
    run_once: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Run `run_once(indices)` (an attack on ``x[indices]``) up to `restarts` times, each time on the
    samples not yet successfully attacked; keep per sample the best point by :func:`success_score`
    (worst case by misclassification, the earliest start on ties)."""
    if restarts == 1:  # one run is its own best; no need to classify it here
        return run_once(torch.arange(x.shape[0], device=x.device))
    best: Optional[torch.Tensor] = None
    best_score = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(restarts):
        todo = torch.arange(x.shape[0], device=x.device) if best is None else (best_score < 2).nonzero().squeeze(1)
        candidate = run_once(todo)
        score = success_score(predict(deciding_model(model), candidate), y[todo], None if target is None else target[todo])
        if best is None:
            best, best_score = candidate, score
        else:
            improved = score > best_score[todo]
            best[todo[improved]] = candidate[improved]
            best_score[todo[improved]] = score[improved]
        if bool((best_score == 2).all()):
            break
    assert best is not None
    return best
