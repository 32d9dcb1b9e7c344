"""``zero-gradients``: All-zero input gradients stop every gradient attack: a quantising or saturating input"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import SANITY_CHECKS, Check, SanityCheck, SanityInputs

ZERO_GRADIENT_SHARE = 0.10  # fires when more than this share of samples have an all-zero input gradient


def check_zero_gradients(inputs: SanityInputs) -> SanityCheck:
    """All-zero input gradients stop every gradient attack: a quantising or saturating input
    layer (gradient masking), or a softmax saturated in float32."""
    indices = inputs.output_subset()
    zero_ce, zero_margin = [], []
    for start in range(0, len(indices), inputs.batch_size):
        chosen = indices[start:start + inputs.batch_size]
        xb = inputs.x[chosen].to(inputs.victim.device).requires_grad_(True)
        yb = inputs.y[chosen].to(inputs.victim.device)
        with torch.enable_grad():
            logits = inputs.victim.gradient_model(xb).float()
            true = logits.gather(1, yb[:, None]).squeeze(1)
            others = logits.scatter(1, yb[:, None], float("-inf")).max(1).values
            ce_grad, = torch.autograd.grad(F.cross_entropy(logits, yb, reduction="sum"), xb, retain_graph=True)
            margin_grad, = torch.autograd.grad((true - others).sum(), xb)
        zero_ce.append((ce_grad.flatten(1).abs().amax(1) == 0).cpu())
        zero_margin.append((margin_grad.flatten(1).abs().amax(1) == 0).cpu())
    ce_share = float(torch.cat(zero_ce).float().mean())
    margin_share = float(torch.cat(zero_margin).float().mean())
    summary = (f"{margin_share:.0%} of {len(indices)} samples have an all-zero input gradient of the logit margin, "
               f"{ce_share:.0%} of the cross-entropy")
    if margin_share > ZERO_GRADIENT_SHARE:
        return SanityCheck("zero-gradients", True, summary + ": gradient attacks cannot move them (gradient masking, "
                           "e.g. a quantising or saturating input layer); trust black-box results (square, auto) more")
    if ce_share > ZERO_GRADIENT_SHARE:
        return SanityCheck("zero-gradients", True, summary + ": the softmax saturates in float32, so cross-entropy "
                           "attacks (fgsm, bim, pgd, apgd-ce) stall; use apgd-dlr or auto")
    return SanityCheck("zero-gradients", False, summary)


SANITY_CHECKS.register("zero-gradients", Check(check_zero_gradients, needs_gradients=True))
