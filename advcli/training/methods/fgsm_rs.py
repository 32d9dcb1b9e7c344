"""``fgsm-rs``: FGSM adversarial training from a random start (Wong et al., 2020), the reference
example's robust training."""

from __future__ import annotations

from . import METHODS, TrainingMethodSpec
from .pgd import pgd_step

METHODS.register("fgsm-rs", TrainingMethodSpec(
    pgd_step, "FGSM from a random start, step 1.25·eps (Wong et al., 2020)",
    default_alpha=lambda eps, iters: 1.25 * eps, multi_step=True, inits=("random", "zero"),
))
