"""Black-box attacks: they query a model's outputs only, so they attack any backend alike.

Kept apart from the white-box :data:`advcli.attacks.ATTACKS`: a black-box attack takes a logits
function (a torch model is wrapped by :func:`advcli.square.torch_logits`) instead of gradients,
and is configured by a query budget instead of step size and iterations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional, Union

import torch
from torch import nn

from .errors import AttackError
from .square import LogitsFn, square_attack, torch_logits

BlackBoxFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]

BLACK_BOX_ATTACKS: dict[str, BlackBoxFn] = {"square": square_attack}

DEFAULT_QUERIES = 1000


@dataclass(frozen=True)
class BlackBoxConfig:
    """One fully resolved black-box attack: what ran, with which parameters."""

    name: str
    eps: float
    queries: int = DEFAULT_QUERIES
    p_init: float = 0.8
    clip: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    def run(
        self,
        target: Union[nn.Module, LogitsFn],
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Attack `target` (a torch model or any function from inputs to logits); returns the inputs."""
        logits_fn = torch_logits(target) if isinstance(target, nn.Module) else target
        x_adv, _ = BLACK_BOX_ATTACKS[self.name](
            logits_fn, x, y, eps=self.eps, queries=self.queries, p_init=self.p_init, clip=self.clip,
            generator=generator,
        )
        return x_adv


def resolve_black_box(name: str, *, eps: float = 0.1, queries: int = DEFAULT_QUERIES, clip: bool = True) -> BlackBoxConfig:
    """Build and validate a black-box attack's configuration eagerly."""
    if name not in BLACK_BOX_ATTACKS:
        raise AttackError(f"unknown black-box attack {name!r}; choose one of: {', '.join(BLACK_BOX_ATTACKS)}")
    if not isinstance(queries, int) or isinstance(queries, bool) or queries < 1:
        raise AttackError(f"queries must be an integer >= 1, got {queries}")
    config = BlackBoxConfig(name=name, eps=float(eps), queries=queries, clip=clip)
    # A dry run on an empty batch applies the attack's own argument checks.
    BLACK_BOX_ATTACKS[name](lambda x: x, torch.zeros(0, 1, 2, 2), torch.zeros(0, dtype=torch.long),
                            eps=config.eps, queries=config.queries, p_init=config.p_init, clip=config.clip)
    return config
