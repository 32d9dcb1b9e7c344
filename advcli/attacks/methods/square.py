"""``square``: the Square attack (Andriushchenko et al., 2020) on a torch model, black box."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ...runtime.autocast import deciding_model
from ...runtime.classifier import torch_logits
from ...runtime.execution import attack_mode
from ...threat import ThreatModel
from ..config import AttackSpec
from ..core import best_of_restarts, check_inputs, validate_attack_args
from . import ATTACKS
from ._square import square_attack

SQUARE_P_INIT = 0.8


def _cpu_generator(generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
    """Square draws on the CPU; derive a CPU generator from one that may live on another device."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    queries: int = 1000,
    p_init: float = SQUARE_P_INIT,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
) -> torch.Tensor:
    """The Square attack (score-based black box) in the L-inf or the L2 `norm` on a torch model,
    with restarts on the samples still correctly classified. Each run spends at most `queries`
    queries per sample. Handed a reduced-precision wrapper, it queries the float32 model behind it."""
    validate_attack_args(threat=ThreatModel(eps, norm, clip), alpha=max(eps, 1e-12), iters=max(queries, 1),
                         restarts=restarts, init="random")
    check_inputs(x, y)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    cpu_generator = _cpu_generator(generator)
    with attack_mode(model):
        logits = torch_logits(deciding_model(model))

        def run_once(todo: torch.Tensor) -> torch.Tensor:
            x_adv, _ = square_attack(logits, x[todo].detach(), y[todo], eps=eps, queries=queries, p_init=p_init,
                                     clip=clip, generator=cpu_generator, norm=norm)
            return x_adv

        return best_of_restarts(model, x, y, None, restarts, run_once)


# Square's alpha is its initial square fraction p_init (0.8), its iters the query budget.
ATTACKS.register("square", AttackSpec(
    square, kind="black-box", targeted=False, queries=True, budget_is_queries=True, inits=("random",),
    options=lambda config: {"queries": config.iters, "p_init": config.alpha, "restarts": config.restarts},
    defaults=lambda eps, iters, norm: {"alpha": SQUARE_P_INIT, "iters": 1000, "init": "random"},
))
