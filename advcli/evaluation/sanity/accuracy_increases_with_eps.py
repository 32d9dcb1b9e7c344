"""``accuracy-increases-with-eps``: A larger budget can never help the model; if an attack does worse with it, it is unreliable."""

from __future__ import annotations

import math

from ...attacks.config import AttackConfig
from . import SANITY_CHECKS, Check, SanityCheck, SanityInputs

MONOTONE_TOLERANCE = 0.03  # fires when accuracy rises with eps by more than this share (and 2 samples)


def check_accuracy_increases_with_eps(inputs: SanityInputs) -> SanityCheck:
    """A larger budget can never help the model; if an attack does worse with it, it is unreliable.

    The evaluation's curve cannot rise by construction, so this runs the first attack (for auto,
    its first member) independently at every radius, and at the unbounded one, on the subset.
    """
    if not len(inputs.subset):
        return SanityCheck("accuracy-increases-with-eps", False, "not checked (no sanity samples)", checked=False)

    def first(attacks: list[AttackConfig]) -> AttackConfig:
        return attacks[0].members(inputs.num_classes)[0]

    runs = [(eps, first(attacks)) for eps, attacks in zip(inputs.eps_values, inputs.attacks_by_eps) if eps > 0]
    if inputs.unbounded_eps not in inputs.eps_values:
        runs.append((inputs.unbounded_eps, first(inputs.resolve(inputs.unbounded_eps))))
    points = [(0.0, int(inputs.clean[inputs.subset].sum()))]
    points += [(eps, int(inputs.measure(attack, inputs.subset).sum())) for eps, attack in runs]
    size = len(inputs.subset)
    tolerance = max(2, math.ceil(MONOTONE_TOLERANCE * size))
    rise, worst = 0, None
    for i, (eps_low, count_low) in enumerate(points):
        for eps_high, count_high in points[i + 1:]:
            if count_high - count_low > rise:
                rise, worst = count_high - count_low, (eps_low, count_low, eps_high, count_high)
    name = runs[0][1].name if runs else inputs.attacks_by_eps[0][0].name
    radii = ", ".join(f"{eps:g}" for eps, _ in points)
    if worst is not None and rise > tolerance:
        eps_low, count_low, eps_high, count_high = worst
        return SanityCheck("accuracy-increases-with-eps", True,
                           f"{name} leaves {count_high / size:.1%} robust at eps={eps_high:g} but {count_low / size:.1%} "
                           f"at eps={eps_low:g} (independent runs on {size} samples): a larger budget never helps the "
                           "model, so the attack is unreliable (gradient masking, or a step size that does not scale)")
    return SanityCheck("accuracy-increases-with-eps", False,
                       f"{name}'s accuracy on {size} samples does not rise with eps (radii {radii}; "
                       f"tolerance {tolerance} samples)")


SANITY_CHECKS.register("accuracy-increases-with-eps", Check(check_accuracy_increases_with_eps))
