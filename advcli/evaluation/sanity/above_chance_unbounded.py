"""``above-chance-unbounded``: With a radius that reaches any image, a working attack drives accuracy below chance."""

from __future__ import annotations

import torch

from ...attacks.config import resolve_attack
from . import SANITY_CHECKS, SANITY_STEPS, Check, SanityCheck, SanityInputs


def check_above_chance_unbounded(inputs: SanityInputs) -> SanityCheck:
    """With a radius that reaches any image, a working attack drives accuracy below chance."""
    eps, chance = inputs.unbounded_eps, 1 / inputs.num_classes
    if eps in inputs.eps_values:
        position = inputs.eps_values.index(eps)
        accuracy = float(torch.stack([mask[position] for mask in inputs.masks]).all(0).float().mean())
        how = f"the evaluated attacks on all {len(inputs.x)} samples"
    elif len(inputs.subset):
        attack = resolve_attack("pgd", eps=eps, iters=SANITY_STEPS, init="zero", norm=inputs.norm, clip=inputs.clip)
        accuracy = float(inputs.measure(attack, inputs.subset).float().mean())
        how = f"PGD-{SANITY_STEPS} from the clean input on {len(inputs.subset)} samples"
    else:
        return SanityCheck("above-chance-unbounded", False, "not checked (no sanity samples)", checked=False)
    if accuracy > chance:
        return SanityCheck("above-chance-unbounded", True,
                           f"accuracy {accuracy:.1%} at eps={eps:g}, where any image is reachable, is above chance "
                           f"({chance:.1%}) under {how}: the attack is not working (gradient masking or too few steps)")
    return SanityCheck("above-chance-unbounded", False,
                       f"accuracy at eps={eps:g} is {accuracy:.1%}, not above chance ({chance:.1%}), under {how}")


SANITY_CHECKS.register("above-chance-unbounded", Check(check_above_chance_unbounded, needs_gradients=True))
