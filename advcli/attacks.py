"""Attacks on pixel-space inputs in [0, 1], under the L-inf or the L2 norm.

Every attack is a plain function ``attack(model, x, y, *, eps, ...)`` with keyword options such as
``alpha, steps, random_start, restarts, norm, target, clip, generator``. FGSM and BIM are special
cases of :func:`pgd`; adversarial training reuses the same :func:`linf_step`. APGD lives in
:mod:`advcli.apgd`, the Square wrapper and ``auto`` in :mod:`advcli.autoattack`; all are in
:data:`ATTACKS`. Gradients are taken with ``torch.autograd.grad`` on the input only, with the model
in ``eval()`` mode and its parameters frozen for the duration of the attack.

A targeted attack (``target`` = a tensor of classes) minimises the loss of the target class and
succeeds when the prediction equals the target; otherwise success means misclassification.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AttackError
from .precision import deciding_model, reference_model


NORMS = ("linf", "l2")

NormName = Enum("NormName", {name: name for name in NORMS}, type=str)  # type: ignore[misc]


def validate_attack_args(*, eps: float, alpha: float, steps: int, restarts: int = 1, norm: str = "linf") -> None:
    """Reject impossible attack parameters before any work is done."""
    if norm not in NORMS:
        raise AttackError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not isinstance(eps, (int, float)) or math.isnan(eps) or eps < 0:
        raise AttackError(f"eps must be a number >= 0, got {eps}")
    if norm == "linf" and eps > 1:
        raise AttackError(f"eps must be <= 1 for inputs in [0, 1], got {eps}")
    if not math.isfinite(eps):
        raise AttackError(f"eps must be finite, got {eps}")
    if not isinstance(alpha, (int, float)) or math.isnan(alpha) or alpha < 0 or (alpha == 0 and eps > 0):
        raise AttackError(f"alpha (step size) must be > 0, got {alpha}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise AttackError(f"iterations must be an integer >= 1, got {steps}")
    if not isinstance(restarts, int) or isinstance(restarts, bool) or restarts < 1:
        raise AttackError(f"restarts must be an integer >= 1, got {restarts}")


def _check_inputs(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.ndim != 4:
        raise AttackError(f"inputs must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise AttackError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if x.numel() and (torch.isnan(x).any() or x.min() < 0 or x.max() > 1):
        raise AttackError("inputs must be pixel values in [0, 1] without NaN")


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode with frozen parameters; restore both afterwards, module by module
    (a wrapper's own mode need not be that of the model it wraps)."""
    modes = [(module, module.training) for module in model.modules()]
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
        for module, training in modes:
            module.training = training


def _check_targets(y: torch.Tensor, target: Optional[torch.Tensor]) -> None:
    if target is None:
        return
    if target.shape != y.shape:
        raise AttackError(f"targets must have the labels' shape {tuple(y.shape)}, got {tuple(target.shape)}")
    same = int((target == y).sum())
    if same:
        raise AttackError(f"the target class equals the true label for {same} samples; nothing to attack there")


# On the CPU, input gradients (and predictions) are taken this many samples at a time, so that one
# chunk's activations stay in cache (seed-cnn on a 2-core EPYC: 1.3 to 1.6 times the speed of 500 at
# once). Each sample's result is its own whatever the chunking: the losses are summed per sample.
CPU_GRADIENT_CHUNK = 128


def gradient_chunks(x: torch.Tensor) -> list[slice]:
    """The row ranges in which input gradients of `x` are taken (all at once off the CPU)."""
    size = CPU_GRADIENT_CHUNK if x.device.type == "cpu" else max(len(x), 1)
    return [slice(start, start + size) for start in range(0, len(x), size)] or [slice(0, 0)]


def by_chunks(fn: Callable[..., Any], x: torch.Tensor, *others: Optional[torch.Tensor]) -> Any:
    """``fn(x, *others)`` taken over the rows of :func:`gradient_chunks` (None passes through) and
    concatenated: a tensor, or each tensor of a returned tuple. Every row's result is its own."""
    chunks = gradient_chunks(x)
    if len(chunks) == 1:
        return fn(x, *others)
    # Each chunk's result goes straight into outputs sized once, and is freed: small results kept
    # between chunks would pin glibc's heap under every later chunk's activations, and the process
    # would grow with the number of chunks.
    outputs: Optional[tuple[torch.Tensor, ...]] = None
    as_tuple = False
    for rows in chunks:
        result = fn(x[rows], *(None if other is None else other[rows] for other in others))
        as_tuple = isinstance(result, tuple)
        parts = result if as_tuple else (result,)
        if outputs is None:
            outputs = tuple(part.new_empty((len(x), *part.shape[1:])) for part in parts)
        for output, part in zip(outputs, parts):
            output[rows] = part
        del result, parts
    assert outputs is not None
    return outputs if as_tuple else outputs[0]


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
    crafts in reduced precision (:class:`advcli.precision.Autocast`), every score above `best` is
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


def l2_norms(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norms of a batch, shaped (N, 1, 1, ...) for broadcasting."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def project_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Shrink each sample's perturbation onto the L2 ball of radius `eps` (unchanged inside it)."""
    return delta * (eps / l2_norms(delta).clamp_min(1e-12)).clamp(max=1.0)


def random_start(
    x: torch.Tensor, eps: float, *, clip: bool, generator: Optional[torch.Generator] = None, norm: str = "linf"
) -> torch.Tensor:
    """A uniform random point of the eps-ball around `x` (and inside [0, 1] when clipping).

    For L2 the point is uniform in the ball's volume: a Gaussian direction and radius eps·U^(1/d).
    """
    if norm == "l2":
        direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        direction = direction / l2_norms(direction).clamp_min(1e-12)
        u = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), generator=generator, device=x.device, dtype=x.dtype)
        x_start = x + eps * u.pow(1.0 / max(x[0].numel(), 1)) * direction
    else:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_start = x + eps * (2 * noise - 1)
    return x_start.clamp(0, 1) if clip else x_start


def linf_step(
    x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, *, eps: float, alpha: float, clip: bool
) -> torch.Tensor:
    """One signed-gradient ascent step from `x_adv`, projected on the eps-ball around `x`.

    With `clip`, the result is also kept inside the valid pixel range [0, 1].
    """
    delta = (x_adv + alpha * grad.sign() - x).clamp(-eps, eps)
    x_next = x + delta
    return x_next.clamp(0, 1) if clip else x_next


def l2_step(
    x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, *, eps: float, alpha: float, clip: bool
) -> torch.Tensor:
    """One ascent step of L2 length `alpha` along the normalised gradient, projected on the L2
    eps-ball around `x` (a zero gradient gives no step). With `clip`, kept inside [0, 1]."""
    direction = grad / l2_norms(grad).clamp_min(1e-12)
    x_next = x + project_l2(x_adv + alpha * direction - x, eps)
    return x_next.clamp(0, 1) if clip else x_next


STEPS = {"linf": linf_step, "l2": l2_step}


def perturb(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    random_init: bool,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    early_stop: bool = False,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Iterated gradient steps (signed for L-inf, normalised for L2) from a zero or random start,
    in the model's current mode.

    With `early_stop`, a sample stops moving once the attack succeeds on it, which keeps the
    first successful point found and saves its remaining gradient computations; a targeted attack
    that only reaches a wrong class keeps the first misclassified point (see :func:`success_score`).
    Used as is by adversarial training (model in train mode); attacks call it through :func:`pgd`.
    Samples are gathered and scattered only once some have stopped.
    """
    x = x.detach()
    x_adv = random_start(x, eps, clip=clip, generator=generator, norm=norm) if random_init else x.clone()
    step = STEPS[norm]
    everyone = torch.arange(x.shape[0], device=x.device)
    best, best_score = x_adv.clone(), torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    active: Optional[torch.Tensor] = None  # the samples still moving; None: all of them
    for _ in range(steps):
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
        moved = step(x_start, x_active, grad, eps=eps, alpha=alpha, clip=clip)
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


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels for `x` (on the CPU in chunks, as gradients are: see :func:`gradient_chunks`)."""
    return by_chunks(lambda xs: model(xs).argmax(1), x)


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


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    steps: int = 20,
    random_start: bool = True,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Projected gradient descent (Madry et al., 2018) under the L-inf or the L2 norm.

    `alpha` defaults to 2.5·eps/steps, so the steps together can cross the ball (Madry et al.).
    L-inf steps are alpha·sign(g); L2 steps are alpha·g/|g|_2 followed by projection on the L2 ball,
    and the random start is uniform inside the ball.

    Runs `restarts` independent starts and keeps, per sample, the first start that makes the model
    misclassify it (worst case by misclassification); with `target`, the first that reaches the
    target class. Returns adversarial inputs with ``|x_adv - x| <= eps`` in the chosen norm (and
    inside [0, 1] when `clip`). ``eps == 0`` returns `x` unchanged.
    """
    if alpha is None:
        alpha = 2.5 * eps / steps if isinstance(steps, int) and steps > 0 else 0.0
    validate_attack_args(eps=eps, alpha=alpha, steps=steps, restarts=restarts, norm=norm)
    _check_inputs(x, y)
    _check_targets(y, target)
    if restarts > 1 and not random_start:
        raise AttackError("restarts > 1 need a random start: identical zero starts give identical results")
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()

    def run_once(todo: torch.Tensor) -> torch.Tensor:
        return perturb(
            model, x[todo], y[todo], eps=eps, alpha=alpha, steps=steps, random_init=random_start, clip=clip,
            generator=generator, early_stop=True, norm=norm, target=None if target is None else target[todo],
        )

    with attack_mode(model):
        return best_of_restarts(model, x, y, target, restarts, run_once)


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    steps: int = 1,
    random_start: bool = False,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size `eps` (or `alpha`);
    under L2, one step of that length along the normalised gradient."""
    if steps != 1:
        raise AttackError(f"fgsm takes exactly one step, got iterations={steps}; use bim or pgd for more")
    return pgd(model, x, y, eps=eps, alpha=eps if alpha is None else alpha, steps=1, random_start=random_start,
               restarts=restarts, clip=clip, generator=generator, norm=norm, target=target)


def bim(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: float = 0.01,
    steps: int = 20,
    random_start: bool = False,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
    target: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Basic iterative method (Kurakin et al., 2017): PGD from a zero start by default."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
               restarts=restarts, clip=clip, generator=generator, norm=norm, target=target)


# Targets -------------------------------------------------------------------------------------

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
    raise AttackError(f"target must be a class index, random, least-likely or top-N, got {spec!r}")


def _ranked_wrong_classes(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Classes other than the label, most likely first (per sample)."""
    masked = logits.clone()
    masked.scatter_(1, y[:, None], float("-inf"))
    return masked.argsort(dim=1, descending=True)[:, : logits.shape[1] - 1]


def _class_target(logits, y, number, generator):
    if number >= logits.shape[1]:
        raise AttackError(f"target class {number} does not exist: the model has {logits.shape[1]} classes")
    return torch.full_like(y, number)


def _random_target(logits, y, number, generator):
    offsets = torch.randint(1, logits.shape[1], y.shape, generator=generator, device=y.device)
    return (y + offsets) % logits.shape[1]


def _least_likely_target(logits, y, number, generator):
    return _ranked_wrong_classes(logits, y)[:, -1]


def _top_target(logits, y, number, generator):
    if number > logits.shape[1] - 1:
        raise AttackError(f"target top-{number} does not exist: the model has {logits.shape[1] - 1} wrong classes")
    return _ranked_wrong_classes(logits, y)[:, number - 1]


_TARGET_RULES: dict[str, Callable[..., torch.Tensor]] = {
    "class": _class_target, "random": _random_target, "least-likely": _least_likely_target, "top": _top_target,
}


def choose_targets(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: str, *, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Target classes for a targeted attack on clean inputs `x`, by the rule in `spec`
    (see :func:`parse_target`). A fixed class equals the label for that class's own samples;
    :meth:`AttackConfig.run` leaves those samples unattacked."""
    rule, number = parse_target(spec)
    with torch.no_grad(), attack_mode(model):
        logits = deciding_model(model)(x).float()
    if logits.shape[1] < 2:
        raise AttackError("targeted attacks need at least 2 classes")
    return _TARGET_RULES[rule](logits, y, number, generator)


DEFAULT_QUERIES = 1000


@dataclass(frozen=True)
class AttackConfig:
    """One fully resolved attack: what ran, with which parameters.

    For ``square``, `alpha` is the initial square fraction p_init and `iters` the query budget;
    for ``auto``, `alpha`, `iters`, `init` and `restarts` configure its APGD members and
    `queries` its Square member.
    """

    name: str
    eps: float
    alpha: float
    iters: int
    restarts: int = 1
    init: str = "zero"  # "zero" | "random"
    clip: bool = True
    norm: str = "linf"
    target: Optional[str] = None
    queries: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
        targets: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Attack `x`; a targeted config draws its targets (unless given) and leaves samples whose
        target is their own label unattacked."""
        options = _RUN_OPTIONS[self.name](self)
        common = {"eps": self.eps, "clip": self.clip, "generator": generator, "norm": self.norm}
        if self.target is not None and targets is None:
            targets = choose_targets(model, x, y, self.target, generator=generator)
        if targets is None:
            return ATTACKS[self.name](model, x, y, **common, **options)
        attackable = targets != y
        x_adv = x.detach().clone()
        if bool(attackable.any()):
            x_adv[attackable] = ATTACKS[self.name](
                model, x[attackable], y[attackable], **common, **options, target=targets[attackable])
        return x_adv


def _gradient_options(config: AttackConfig) -> dict:
    return {"alpha": config.alpha, "steps": config.iters, "random_start": config.init == "random",
            "restarts": config.restarts}


_RUN_OPTIONS: dict[str, Callable[[AttackConfig], dict]] = {
    "fgsm": _gradient_options, "bim": _gradient_options, "pgd": _gradient_options,
    "apgd-ce": _gradient_options, "apgd-dlr": _gradient_options,
    "square": lambda c: {"queries": c.iters, "p_init": c.alpha, "restarts": c.restarts},
    "auto": lambda c: {**_gradient_options(c), "queries": c.queries},
}

# Per-attack defaults; the reference example's BIM uses alpha 0.01 for 20 iterations from a zero start.
# APGD starts with step 2·eps (Croce & Hein, 2020); Square's alpha is p_init = 0.8, its iters the queries.
_DEFAULTS: dict[str, Callable[[float, Optional[int], str], dict]] = {
    "fgsm": lambda eps, iters, norm: {"alpha": eps, "iters": 1, "init": "zero"},
    "bim": lambda eps, iters, norm: {"alpha": 0.01 if norm == "linf" else 2.5 * eps / (iters or 20),
                                     "iters": 20, "init": "zero"},
    "pgd": lambda eps, iters, norm: {"alpha": 2.5 * eps / (iters or 20), "iters": 20, "init": "random"},
    "apgd-ce": lambda eps, iters, norm: {"alpha": 2 * eps, "iters": 100, "init": "random"},
    "apgd-dlr": lambda eps, iters, norm: {"alpha": 2 * eps, "iters": 100, "init": "random"},
    "square": lambda eps, iters, norm: {"alpha": 0.8, "iters": DEFAULT_QUERIES, "init": "random"},
    "auto": lambda eps, iters, norm: {"alpha": 2 * eps, "iters": 100, "init": "random"},
}

INITS = ("zero", "random")

# Attacks that choose no targets of their own, and those with a query budget.
_UNTARGETED_ONLY = ("square", "auto")
_QUERY_BUDGET = ("square", "auto")


def resolve_attack(
    name: str,
    *,
    eps: float = 0.1,
    alpha: Optional[float] = None,
    iters: Optional[int] = None,
    restarts: int = 1,
    init: Optional[str] = None,
    clip: bool = True,
    norm: str = "linf",
    target: Optional[str] = None,
    queries: Optional[int] = None,
) -> AttackConfig:
    """Fill in an attack's defaults and validate everything eagerly.

    `queries` is the Square budget (``square`` and ``auto``); Square ignores `alpha` and `iters`.
    """
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    if norm not in NORMS:
        raise AttackError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if queries is not None and (not isinstance(queries, int) or isinstance(queries, bool) or queries < 1):
        raise AttackError(f"queries must be an integer >= 1, got {queries}")
    defaults = _DEFAULTS[name](eps, iters, norm)
    init = defaults["init"] if init is None else init
    if init not in INITS:
        raise AttackError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if target is not None:
        if name in _UNTARGETED_ONLY:
            raise AttackError(f"{name} takes no --target ({'it picks its own' if name == 'auto' else 'untargeted only'})")
        target = str(target).strip().lower()
        parse_target(target)
    if name == "square":
        if init != "random":
            raise AttackError("square always starts from a random point; it takes no --init zero")
        alpha, iters = None, queries or DEFAULT_QUERIES
    config = AttackConfig(
        name=name,
        eps=float(eps),
        alpha=float(defaults["alpha"] if alpha is None else alpha),
        iters=int(defaults["iters"] if iters is None else iters),
        restarts=restarts,
        init=init,
        clip=clip,
        norm=norm,
        target=target,
        queries=(queries or DEFAULT_QUERIES) if name in _QUERY_BUDGET else None,
    )
    if name == "fgsm" and config.iters != 1:
        raise AttackError(f"fgsm takes exactly one step, got iterations={config.iters}; use bim or pgd for more")
    if config.restarts > 1 and config.init != "random":
        raise AttackError("restarts > 1 need --init random: identical zero starts give identical results")
    validate_attack_args(eps=config.eps, alpha=config.alpha, steps=config.iters, restarts=config.restarts, norm=norm)
    return config


# Registry (last: APGD, Square and auto import the helpers above) ---------------------------

from .apgd import apgd_ce, apgd_dlr  # noqa: E402
from .autoattack import auto, square  # noqa: E402

AttackFn = Callable[..., torch.Tensor]

ATTACKS: dict[str, AttackFn] = {
    "fgsm": fgsm, "bim": bim, "pgd": pgd, "apgd-ce": apgd_ce, "apgd-dlr": apgd_dlr, "square": square, "auto": auto,
}

AttackName = Enum("AttackName", {name: name for name in ATTACKS}, type=str)  # type: ignore[misc]

# What each attack is, for the sanity checks: one gradient step, many, queries only, or a sequence.
ATTACK_KINDS: dict[str, str] = {
    "fgsm": "single-step", "bim": "iterative", "pgd": "iterative", "apgd-ce": "iterative",
    "apgd-dlr": "iterative", "square": "black-box", "auto": "ensemble",
}
