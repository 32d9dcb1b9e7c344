"""White-box L-inf attacks on pixel-space inputs in [0, 1].

Every attack is a plain function ``attack(model, x, y, *, eps, alpha, steps, random_start,
restarts, clip, generator)``. FGSM and BIM are special cases of :func:`pgd`; adversarial training
reuses the same :func:`linf_step`. Gradients are taken with ``torch.autograd.grad`` on the input
only, with the model in ``eval()`` mode and its parameters frozen for the duration of the attack.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .errors import AttackError


def validate_attack_args(*, eps: float, alpha: float, steps: int, restarts: int = 1) -> None:
    """Reject impossible attack parameters before any work is done."""
    if not isinstance(eps, (int, float)) or math.isnan(eps) or eps < 0:
        raise AttackError(f"eps must be a number >= 0, got {eps}")
    if eps > 1:
        raise AttackError(f"eps must be <= 1 for inputs in [0, 1], got {eps}")
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
    """Put `model` in eval mode with frozen parameters; restore both afterwards."""
    was_training = model.training
    frozen = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for parameter in frozen:
        parameter.requires_grad_(False)
    try:
        yield model
    finally:
        for parameter in frozen:
            parameter.requires_grad_(True)
        model.train(was_training)


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of the summed cross-entropy with respect to `x`, and the logits at `x`."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad, logits.detach()


def random_start(
    x: torch.Tensor, eps: float, *, clip: bool, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """A uniform random point of the eps-ball around `x` (and inside [0, 1] when clipping)."""
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
) -> torch.Tensor:
    """Iterated signed-gradient steps from a zero or random start, in the model's current mode.

    With `early_stop`, a sample stops moving once the model misclassifies it, which keeps the
    first adversarial point found and saves its remaining gradient computations.
    Used as is by adversarial training (model in train mode); attacks call it through :func:`pgd`.
    """
    x = x.detach()
    x_adv = random_start(x, eps, clip=clip, generator=generator) if random_init else x.clone()
    active = torch.arange(x.shape[0], device=x.device)
    for _ in range(steps):
        x_active = x_adv[active]
        y_active = y[active]
        grad, logits = input_gradient(model, x_active, y_active)
        if early_stop:
            still_correct = logits.argmax(1) == y_active
            if not bool(still_correct.all()):
                active, x_active, grad = active[still_correct], x_active[still_correct], grad[still_correct]
                if active.numel() == 0:
                    break
        x_adv[active] = linf_step(x[active], x_active, grad, eps=eps, alpha=alpha, clip=clip)
    return x_adv


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels for `x`."""
    return model(x).argmax(1)


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
) -> torch.Tensor:
    """Projected gradient descent under the L-inf norm (Madry et al., 2018).

    `alpha` defaults to 2.5·eps/steps, so the steps together can cross the ball (Madry et al.).

    Runs `restarts` independent starts and keeps, per sample, the first start that makes the model
    misclassify it (worst case by misclassification). Returns adversarial inputs with
    ``|x_adv - x|_inf <= eps`` (and inside [0, 1] when `clip`). ``eps == 0`` returns `x` unchanged.
    """
    if alpha is None:
        alpha = 2.5 * eps / steps if isinstance(steps, int) and steps > 0 else 0.0
    validate_attack_args(eps=eps, alpha=alpha, steps=steps, restarts=restarts)
    _check_inputs(x, y)
    if restarts > 1 and not random_start:
        raise AttackError("restarts > 1 need a random start: identical zero starts give identical results")
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    with attack_mode(model):
        best = None
        fooled = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(restarts):
            todo = ~fooled
            candidate = perturb(
                model, x[todo], y[todo], eps=eps, alpha=alpha, steps=steps,
                random_init=random_start, clip=clip, generator=generator, early_stop=True,
            )
            if best is None:
                best = candidate
            else:
                best[todo] = candidate
            fooled[todo] = predict(model, candidate) != y[todo]
            if bool(fooled.all()):
                break
    return best


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
) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al., 2015): one step of size `eps` (or `alpha`)."""
    if steps != 1:
        raise AttackError(f"fgsm takes exactly one step, got iterations={steps}; use bim or pgd for more")
    return pgd(model, x, y, eps=eps, alpha=eps if alpha is None else alpha, steps=1,
               random_start=random_start, restarts=restarts, clip=clip, generator=generator)


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
) -> torch.Tensor:
    """Basic iterative method (Kurakin et al., 2017): PGD from a zero start by default."""
    return pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, random_start=random_start,
               restarts=restarts, clip=clip, generator=generator)


AttackFn = Callable[..., torch.Tensor]

ATTACKS: dict[str, AttackFn] = {"fgsm": fgsm, "bim": bim, "pgd": pgd}

AttackName = Enum("AttackName", {name: name for name in ATTACKS}, type=str)  # type: ignore[misc]


@dataclass(frozen=True)
class AttackConfig:
    """One fully resolved attack: what ran, with which parameters."""

    name: str
    eps: float
    alpha: float
    iters: int
    restarts: int = 1
    init: str = "zero"  # "zero" | "random"
    clip: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    def run(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        return ATTACKS[self.name](
            model, x, y, eps=self.eps, alpha=self.alpha, steps=self.iters,
            random_start=self.init == "random", restarts=self.restarts, clip=self.clip, generator=generator,
        )


# Per-attack defaults; the reference example's BIM uses alpha 0.01 for 20 iterations from a zero start.
_DEFAULTS: dict[str, Callable[[float, int | None], dict]] = {
    "fgsm": lambda eps, iters: {"alpha": eps, "iters": 1, "init": "zero"},
    "bim": lambda eps, iters: {"alpha": 0.01, "iters": 20, "init": "zero"},
    "pgd": lambda eps, iters: {"alpha": 2.5 * eps / (iters or 20), "iters": 20, "init": "random"},
}

INITS = ("zero", "random")


def resolve_attack(
    name: str,
    *,
    eps: float = 0.1,
    alpha: Optional[float] = None,
    iters: Optional[int] = None,
    restarts: int = 1,
    init: Optional[str] = None,
    clip: bool = True,
) -> AttackConfig:
    """Fill in an attack's defaults and validate everything eagerly."""
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; choose one of: {', '.join(ATTACKS)}")
    defaults = _DEFAULTS[name](eps, iters)
    init = defaults["init"] if init is None else init
    if init not in INITS:
        raise AttackError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    config = AttackConfig(
        name=name,
        eps=float(eps),
        alpha=float(defaults["alpha"] if alpha is None else alpha),
        iters=int(defaults["iters"] if iters is None else iters),
        restarts=restarts,
        init=init,
        clip=clip,
    )
    if name == "fgsm" and config.iters != 1:
        raise AttackError(f"fgsm takes exactly one step, got iterations={config.iters}; use bim or pgd for more")
    if config.restarts > 1 and config.init != "random":
        raise AttackError("restarts > 1 need --init random: identical zero starts give identical results")
    validate_attack_args(eps=config.eps, alpha=config.alpha, steps=config.iters, restarts=config.restarts)
    return config
