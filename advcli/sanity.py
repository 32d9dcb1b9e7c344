"""Sanity checks that come with every robustness evaluation.

A robust-accuracy figure is only as good as the attacks behind it. These checks look for the
usual signs that the attacks did not work (Carlini et al., 2019; Athalye et al., 2018) and
report each as a named flag with a one-line explanation. Most reuse what the evaluation measured;
the rest run cheap attacks on a small seeded subset of the samples. Thresholds are heuristics and
are stated in each explanation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import ATTACK_KINDS, AttackConfig, resolve_attack
from .autoattack import attack_members

# A check fires when...
PROBABILITY_SHARE = 0.99  # ...this share of output rows are non-negative and sum to 1,
ZERO_GRADIENT_SHARE = 0.10  # ...more than this share of samples have an all-zero input gradient,
FGSM_GAP = 0.30  # ...FGSM keeps this much more accuracy than iterative attacks, over twice as much and
#                   at least half the clean accuracy (catastrophic overfitting leaves FGSM almost harmless),
BLACK_BOX_SHARE = 0.01  # ...a black-box attack fools more than this share that white-box ones left,
MONOTONE_TOLERANCE = 0.03  # ...accuracy rises with eps by more than this share (and 2 samples).
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

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    clean: torch.Tensor
    eps_values: tuple[float, ...]
    attacks_by_eps: list[list[AttackConfig]]
    members: list[list[AttackConfig]]
    masks: list[list[torch.Tensor]]
    breakers: list[list[torch.Tensor]]
    num_classes: int
    norm: str
    clip: bool
    subset: torch.Tensor
    resolve: Callable[[float], list[AttackConfig]]
    measure: Callable[[AttackConfig, torch.Tensor], torch.Tensor]
    device: torch.device
    batch_size: int
    seed: int = 0
    on_progress: Optional[Callable[[str, int, int], None]] = None
    gradient_model: Optional[nn.Module] = None  # where input gradients are taken (transfer source); None: model
    outputs_only: bool = False  # no gradients anywhere: the checks that need them are not run

    @property
    def unbounded_eps(self) -> float:
        """A radius that reaches every image: 1 under L-inf, the cube's diagonal under L2."""
        return 1.0 if self.norm == "linf" else math.sqrt(self.x[0].numel())

    def output_subset(self) -> torch.Tensor:
        return self.subset if len(self.subset) else torch.arange(min(OUTPUT_SAMPLES, len(self.x)))


def _logits(inputs: SanityInputs, indices: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([inputs.model(inputs.x[indices[i:i + inputs.batch_size]].to(inputs.device)).float().cpu()
                          for i in range(0, len(indices), inputs.batch_size)])


def check_probability_outputs(inputs: SanityInputs) -> SanityCheck:
    """Outputs that are probabilities (a softmax layer) make cross-entropy gradients vanish."""
    logits = _logits(inputs, inputs.output_subset())
    looks = (logits >= 0).all(1) & ((logits.sum(1) - 1).abs() < 1e-3)
    share = float(looks.float().mean())
    if share >= PROBABILITY_SHARE:
        return SanityCheck("probability-outputs", True,
                           f"{share:.0%} of output rows are non-negative and sum to 1: the model outputs probabilities, "
                           "not logits; attack losses saturate on them and robustness looks better than it is")
    return SanityCheck("probability-outputs", False, f"outputs are logits ({share:.0%} of rows look like probabilities)")


def check_zero_gradients(inputs: SanityInputs) -> SanityCheck:
    """All-zero input gradients stop every gradient attack: a quantising or saturating input
    layer (gradient masking), or a softmax saturated in float32."""
    indices = inputs.output_subset()
    zero_ce, zero_margin = [], []
    for start in range(0, len(indices), inputs.batch_size):
        chosen = indices[start:start + inputs.batch_size]
        xb = inputs.x[chosen].to(inputs.device).requires_grad_(True)
        yb = inputs.y[chosen].to(inputs.device)
        with torch.enable_grad():
            logits = (inputs.gradient_model or inputs.model)(xb).float()
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


def check_accuracy_increases_with_eps(inputs: SanityInputs) -> SanityCheck:
    """A larger budget can never help the model; if an attack does worse with it, it is unreliable.

    The evaluation's curve cannot rise by construction, so this runs the first attack (for auto,
    its first member) independently at every radius, and at the unbounded one, on the subset.
    """
    if not len(inputs.subset):
        return SanityCheck("accuracy-increases-with-eps", False, "not checked (no sanity samples)", checked=False)

    def first(attacks: list[AttackConfig]) -> AttackConfig:
        return attack_members(attacks[0], inputs.num_classes)[0]

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


def check_fgsm_far_above_iterative(inputs: SanityInputs) -> SanityCheck:
    """FGSM far weaker than iterative attacks is the signature of catastrophic overfitting."""
    names = [attack.name for attack in inputs.attacks_by_eps[-1]]
    fgsm_at = names.index("fgsm") if "fgsm" in names else None
    iterative = [i for i, name in enumerate(names) if ATTACK_KINDS[name] in ("iterative", "ensemble")]
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


def check_black_box_beats_white_box(inputs: SanityInputs) -> SanityCheck:
    """Gradients should find what queries find; if a black-box attack finds much more, they mislead."""
    black = [[i for i, m in enumerate(members) if ATTACK_KINDS[m.name] == "black-box"] for members in inputs.members]
    white = [[i for i, m in enumerate(members) if ATTACK_KINDS[m.name] != "black-box"] for members in inputs.members]
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


SANITY_CHECKS: list[Callable[[SanityInputs], SanityCheck]] = [
    check_probability_outputs,
    check_zero_gradients,
    check_above_chance_unbounded,
    check_accuracy_increases_with_eps,
    check_fgsm_far_above_iterative,
    check_black_box_beats_white_box,
]


# Checks that take input gradients or run white-box attacks, by the name they report.
GRADIENT_CHECKS: dict[Callable[[SanityInputs], SanityCheck], str] = {
    check_zero_gradients: "zero-gradients",
    check_above_chance_unbounded: "above-chance-unbounded",
    check_fgsm_far_above_iterative: "fgsm-far-above-pgd",
}


def run_sanity_checks(inputs: SanityInputs) -> list[SanityCheck]:
    """Every check in :data:`SANITY_CHECKS`, in order (those needing gradients only when there are some)."""
    results = []
    for done, check in enumerate(SANITY_CHECKS):
        if inputs.on_progress is not None:
            inputs.on_progress("sanity checks", done, len(SANITY_CHECKS))
        if inputs.outputs_only and check in GRADIENT_CHECKS:
            results.append(SanityCheck(GRADIENT_CHECKS[check], False,
                                       "not checked (the model gives outputs only, no gradients)", checked=False))
            continue
        results.append(check(inputs))
    if inputs.on_progress is not None:
        inputs.on_progress("sanity checks", len(SANITY_CHECKS), len(SANITY_CHECKS))
    return results
