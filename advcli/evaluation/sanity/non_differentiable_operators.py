"""``non-differentiable-operators``: Operators in the model's graph with zero or undefined gradients
(ArgMax, Round, QuantizeLinear, TopK, integer casts...) can mask gradients."""

from __future__ import annotations

from . import SANITY_CHECKS, Check, SanityCheck, SanityInputs


def check_non_differentiable_operators(inputs: SanityInputs) -> SanityCheck:
    """Operators on the image's data path whose gradient is zero or undefined make white-box attacks
    see no slope where the model's decision still changes: possible gradient masking."""
    found = inputs.victim.non_differentiable
    if found is None:
        return SanityCheck("non-differentiable-operators", False,
                           "not checked (no graph to inspect: a run folder or an eager Python module)", checked=False)
    if found:
        return SanityCheck("non-differentiable-operators", True,
                           f"the graph computes {', '.join(found)} from the image: their gradients are zero or "
                           "undefined, so white-box attacks may stall where the model is not robust (possible "
                           "gradient masking); trust black-box results (square, auto) more, and compare them")
    return SanityCheck("non-differentiable-operators", False,
                       "no non-differentiable operators on the image's data path of the graph")


SANITY_CHECKS.register("non-differentiable-operators", Check(check_non_differentiable_operators))
