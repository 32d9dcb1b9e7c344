"""Bound methods: one file per method, each registering a :class:`BoundMethod` under its file's name
(``alpha_crown.py`` is ``alpha-crown``); the command line's ``--method`` choices come from here.

A method bounds ``spec · logits`` from below (and, when asked, from above) over an input box:
``bound(graph, ctx, box, spec, intermediate=..., upper=..., alpha_steps=...) -> (lower, upper)``.
:data:`INTERMEDIATE_METHODS` names how the bounds of the layers before the output are computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from ...registry import Registry

if TYPE_CHECKING:
    import torch

BoundFn = Callable[..., "tuple[torch.Tensor, Optional[torch.Tensor]]"]


@dataclass(frozen=True)
class BoundMethod:
    """A bound method: its function, a one-line summary, and the intermediate bounds it takes by
    default (None: it takes none, its layers are bounded by intervals)."""

    bound: BoundFn
    summary: str
    default_intermediate: Optional[str] = "crown"


BOUND_METHODS: Registry[BoundMethod] = Registry("bound method", param="method", package=__name__,
                                                order=("ibp", "crown", "alpha-crown"))

INTERMEDIATE_METHODS: Registry[str] = Registry("intermediate bound method", param="intermediate", order=("crown", "ibp"),
                                               entries={
    "crown": "a CROWN pass from every layer whose neurons a relaxation depends on (tighter, slower)",
    "ibp": "interval propagation (CROWN-IBP's bound when the margins are bounded by CROWN)",
})
