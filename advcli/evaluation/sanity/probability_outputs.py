"""``probability-outputs``: Outputs that are probabilities (a softmax layer) make cross-entropy gradients vanish."""

from __future__ import annotations

from . import SANITY_CHECKS, Check, SanityCheck, SanityInputs
from ._common import logits_of

PROBABILITY_SHARE = 0.99  # fires when this share of output rows are non-negative and sum to 1


def check_probability_outputs(inputs: SanityInputs) -> SanityCheck:
    """Outputs that are probabilities (a softmax layer) make cross-entropy gradients vanish."""
    logits = logits_of(inputs, inputs.output_subset())
    looks = (logits >= 0).all(1) & ((logits.sum(1) - 1).abs() < 1e-3)
    share = float(looks.float().mean())
    if share >= PROBABILITY_SHARE:
        return SanityCheck("probability-outputs", True,
                           f"{share:.0%} of output rows are non-negative and sum to 1: the model outputs probabilities, "
                           "not logits; attack losses saturate on them and robustness looks better than it is")
    return SanityCheck("probability-outputs", False, f"outputs are logits ({share:.0%} of rows look like probabilities)")


SANITY_CHECKS.register("probability-outputs", Check(check_probability_outputs))
