"""Sanity checks that come with every robustness evaluation: one file per check, each registering a
:class:`Check` under its file's name.

A robust-accuracy figure is only as good as the attacks behind it. These checks look for the
usual signs that the attacks did not work (Carlini et al., 2019; Athalye et al., 2018) and
report each as a named flag with a one-line explanation. Most reuse what the evaluation measured;
the rest run cheap attacks on a small seeded subset of the samples. Thresholds are heuristics and
are stated in each explanation. To add a check, add ``advcli/evaluation/sanity/<name>.py`` that calls
``SANITY_CHECKS.register("<name>", Check(function))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ...registry import Registry

if TYPE_CHECKING:
    import torch

    from ...attacks.config import AttackConfig
    from ...runtime.victim import Victim

OUTPUT_SAMPLES = 100  # samples for the output and gradient checks when no subset is given
SANITY_STEPS = 10  # PGD steps of the cheap extra runs


@dataclass
class SanityCheck:
    """One named check: whether it fired, and why in one line. `checked` is False when the
    evaluation had nothing to check it with."""

    name: str
    fired: bool
    detail: str
    checked: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fired": self.fired, "checked": self.checked, "detail": self.detail}


@dataclass
class SanityInputs:
    """What the evaluation measured, and how to measure more.

    `masks[a][e]` and `breakers[a][e]` are, for attack `a` at radius `eps_values[e]`, the robust
    samples and the index (into `members[a]`) of the member that fooled each sample (-1: none).
    `measure(attack, indices)` returns which of those samples are clean-correct and survive `attack`.
    """

    victim: "Victim"
    x: "torch.Tensor"
    y: "torch.Tensor"
    clean: "torch.Tensor"
    eps_values: tuple[float, ...]
    attacks_by_eps: list[list["AttackConfig"]]
    members: list[list["AttackConfig"]]
    masks: list[list["torch.Tensor"]]
    breakers: list[list["torch.Tensor"]]
    num_classes: int
    norm: str
    clip: bool
    subset: "torch.Tensor"
    resolve: Callable[[float], list["AttackConfig"]]
    measure: Callable[["AttackConfig", "torch.Tensor"], "torch.Tensor"]
    batch_size: int
    seed: int = 0
    on_progress: Optional[Callable[[str, int, int], None]] = None

    @property
    def unbounded_eps(self) -> float:
        """A radius that reaches every image: 1 under L-inf, the cube's diagonal under L2."""
        return 1.0 if self.norm == "linf" else math.sqrt(self.x[0].numel())

    def output_subset(self) -> "torch.Tensor":
        import torch

        return self.subset if len(self.subset) else torch.arange(min(OUTPUT_SAMPLES, len(self.x)))


@dataclass(frozen=True)
class Check:
    """A sanity check: `run(inputs)`; `needs_gradients` when it takes input gradients or runs
    white-box attacks (it is then not run on a model known by its outputs only)."""

    run: Callable[[SanityInputs], SanityCheck]
    needs_gradients: bool = False


SANITY_CHECKS: Registry[Check] = Registry("sanity check", param="sanity", package=__name__, order=(
    "finite-outputs", "probability-outputs", "zero-gradients", "non-differentiable-operators", "above-chance-unbounded",
    "accuracy-increases-with-eps", "fgsm-far-above-pgd", "black-box-beats-white-box"))


def run_sanity_checks(inputs: SanityInputs) -> list[SanityCheck]:
    """Every registered check, in order (those needing gradients only when there are some)."""
    results = []
    checks = SANITY_CHECKS.items()
    for done, (name, check) in enumerate(checks):
        if inputs.on_progress is not None:
            inputs.on_progress("sanity checks", done, len(checks))
        if inputs.victim.outputs_only and check.needs_gradients:
            results.append(SanityCheck(name, False, "not checked (the model gives outputs only, no gradients)",
                                       checked=False))
            continue
        results.append(check.run(inputs))
    if inputs.on_progress is not None:
        inputs.on_progress("sanity checks", len(checks), len(checks))
    return results
