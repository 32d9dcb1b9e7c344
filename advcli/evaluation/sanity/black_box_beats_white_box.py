"""``black-box-beats-white-box``: Gradients should find what queries find; if a black-box attack finds much more, they mislead."""

from __future__ import annotations

import torch

from . import SANITY_CHECKS, Check, SanityCheck, SanityInputs

BLACK_BOX_SHARE = 0.01  # fires when a black-box attack fools more than this share that white-box ones left


def check_black_box_beats_white_box(inputs: SanityInputs) -> SanityCheck:
    """Gradients should find what queries find; if a black-box attack finds much more, they mislead."""
    black = [[i for i, m in enumerate(members) if m.black_box] for members in inputs.members]
    white = [[i for i, m in enumerate(members) if not m.black_box] for members in inputs.members]
    if not any(black) or not any(white):
        return SanityCheck("black-box-beats-white-box", False,
                           "not checked (needs a black-box and a white-box attack, e.g. auto or square with pgd)",
                           checked=False)
    total = len(inputs.x)
    worst = (0, inputs.eps_values[-1])
    for position, eps in enumerate(inputs.eps_values):
        white_robust = inputs.clean.clone()
        black_fooled = torch.zeros_like(inputs.clean)
        for attack in range(len(inputs.members)):
            breaker = inputs.breakers[attack][position]
            if white[attack]:
                white_robust &= ~torch.isin(breaker, torch.tensor(white[attack]))
            if black[attack]:
                black_fooled |= torch.isin(breaker, torch.tensor(black[attack]))
        found = int((white_robust & black_fooled).sum())
        worst = max(worst, (found, eps))
    found, eps = worst
    if found >= 2 and found > BLACK_BOX_SHARE * total:
        return SanityCheck("black-box-beats-white-box", True,
                           f"at eps={eps:g} the black-box attack fooled {found} samples ({found / total:.1%}) that every "
                           "white-box attack left robust: the gradients mislead (gradient masking), so white-box "
                           "figures alone overstate robustness")
    return SanityCheck("black-box-beats-white-box", False,
                       f"black-box attacks fooled {found} samples the white-box ones missed "
                       f"(fires above {BLACK_BOX_SHARE:.0%} of {total})")


SANITY_CHECKS.register("black-box-beats-white-box", Check(check_black_box_beats_white_box))
