"""``fgsm-far-above-pgd``: FGSM far weaker than iterative attacks is the signature of catastrophic overfitting."""

from __future__ import annotations

import torch

from ...attacks.config import resolve_attack
from . import SANITY_CHECKS, SANITY_STEPS, Check, SanityCheck, SanityInputs

# Fires when FGSM keeps this much more accuracy than iterative attacks, over twice as much and at least half
# the clean accuracy (catastrophic overfitting leaves FGSM almost harmless).
FGSM_GAP = 0.30


def check_fgsm_far_above_iterative(inputs: SanityInputs) -> SanityCheck:
    """FGSM far weaker than iterative attacks is the signature of catastrophic overfitting."""
    names = [attack.name for attack in inputs.attacks_by_eps[-1]]
    fgsm_at = names.index("fgsm") if "fgsm" in names else None
    iterative = [i for i, attack in enumerate(inputs.attacks_by_eps[-1]) if attack.spec.kind in ("iterative", "ensemble")]
    label = "/".join(names[i] for i in iterative) if iterative else f"PGD-{SANITY_STEPS}"
    if (fgsm_at is None or not iterative) and not len(inputs.subset):
        return SanityCheck("fgsm-far-above-pgd", False, "not checked (no sanity samples)", checked=False)
    worst = None
    for position, eps in enumerate(inputs.eps_values):
        if eps == 0:
            continue
        if fgsm_at is not None and iterative:
            chosen = torch.arange(len(inputs.x))
            fgsm_robust = inputs.masks[fgsm_at][position]
        else:
            chosen = inputs.subset
            fgsm_robust = (inputs.masks[fgsm_at][position][chosen] if fgsm_at is not None else inputs.measure(
                resolve_attack("fgsm", eps=eps, norm=inputs.norm, clip=inputs.clip), chosen))
        if iterative:
            iterative_robust = torch.stack([inputs.masks[i][position][chosen] for i in iterative]).all(0)
        else:
            iterative_robust = inputs.measure(resolve_attack("pgd", eps=eps, iters=SANITY_STEPS, norm=inputs.norm,
                                                             clip=inputs.clip), chosen)
        fgsm_accuracy = float(fgsm_robust.float().mean())
        iterative_accuracy = float(iterative_robust.float().mean())
        clean_accuracy = float(inputs.clean[chosen].float().mean())
        gap = fgsm_accuracy - iterative_accuracy
        fired = gap > FGSM_GAP and iterative_accuracy < 0.5 * fgsm_accuracy and fgsm_accuracy >= 0.5 * clean_accuracy
        if worst is None or (fired, gap) > (worst[0], worst[1]):
            worst = (fired, gap, eps, fgsm_accuracy, iterative_accuracy, len(chosen))
    if worst is None:
        return SanityCheck("fgsm-far-above-pgd", False, "not checked (no eps > 0)", checked=False)
    fired, gap, eps, fgsm_accuracy, iterative_accuracy, size = worst
    if fired:
        return SanityCheck("fgsm-far-above-pgd", True,
                           f"at eps={eps:g} FGSM leaves {fgsm_accuracy:.1%} robust but {label} only "
                           f"{iterative_accuracy:.1%} ({size} samples): the signature of catastrophic overfitting or "
                           "gradient masking; FGSM figures say nothing about this model's robustness")
    return SanityCheck("fgsm-far-above-pgd", False,
                       f"FGSM is not far above {label} (fires when it keeps half the clean accuracy, twice "
                       f"theirs and {FGSM_GAP:.0%} more): largest gap {gap:.1%} at eps={eps:g}")


SANITY_CHECKS.register("fgsm-far-above-pgd", Check(check_fgsm_far_above_iterative, needs_gradients=True))
