"""The one streaming attack engine: attacks samples batch by batch, re-checks every adversarial
example against the threat model and re-classifies it, and fails loudly when that disagrees with
the attack's own bookkeeping. ``advcli eval`` and ``advcli attack`` both run through it.

Only clean-correct samples are attacked (a clean error is non-robust, and is left as it is). Several
radii are evaluated in increasing order, each attack only on the samples it has not fooled at a
smaller one: an adversarial example inside a small ball is inside every larger one, so this is exact
and the curve never rises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..attacks.config import AttackConfig
from ..attacks.sequence import run_sequence
from ..errors import AdvcliError, AttackError
from ..runtime.execution import by_chunks, predict
from ..runtime.victim import QueryCounter, Victim
from .report import AttackResult

Progress = Callable[[str, int, int], None]


@dataclass
class AttackedSamples:
    """The re-checked outcome of one attack on some samples (all on the CPU)."""

    fooled_by: torch.Tensor  # index of the member that fooled the sample, -1: robust
    predictions: torch.Tensor  # re-classified adversarial predictions
    targets: torch.Tensor  # target class of a targeted attack, -1: none
    largest: float  # largest |delta| in the attack's norm
    queries: int = 0  # inputs the black-box members asked the model about
    adversarials: Optional[torch.Tensor] = None  # the adversarial examples, when kept


@torch.no_grad()
def clean_predictions(victim: Victim, x: torch.Tensor, *, batch_size: int) -> torch.Tensor:
    """The judge's labels for `x`, in batches, written into one tensor sized once. Outputs that are
    NaN or infinite are refused: no label follows from them, and an accuracy counted over them would
    not be a measurement."""
    predictions = torch.empty(len(x), dtype=torch.long)
    non_finite = 0
    for start in range(0, len(x), batch_size):
        logits = by_chunks(victim.judge, x[start:start + batch_size].to(victim.device, non_blocking=True))
        non_finite += int((~torch.isfinite(logits).all(1)).sum())
        predictions[start:start + batch_size] = logits.argmax(1).cpu()
    if non_finite:
        raise AdvcliError(f"the model's outputs are NaN or infinite on {non_finite} of {len(x)} clean samples: "
                          "no prediction follows from them, so no accuracy is reported")
    return predictions


def attack_samples(
    victim: Victim,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: AttackConfig,
    *,
    rows: torch.Tensor,
    num_classes: int,
    batch_size: int,
    seed: int,
    on_batch: Optional[Callable[[int], None]] = None,
    keep_adversarials: bool = False,
) -> AttackedSamples:
    """Attack the samples ``x[rows]`` in batches (a composite as its sequence of members): white-box
    members craft on the victim's crafter, black-box members query its judge, and the judge decides
    and re-classifies. Rows are gathered one batch at a time (no copy of the whole selection)."""
    members = attack.members(num_classes)
    if victim.outputs_only and not all(member.black_box for member in members):
        raise AdvcliError(f"{attack.name} needs gradients, but the model gives outputs only; name a source "
                          "checkpoint for transfer attacks (`source`) or use black-box attacks (square)",
                          param="source")
    counter = QueryCounter(victim.judge)

    def attacker(member: AttackConfig) -> torch.nn.Module:
        return counter if member.black_box else victim.crafter

    def accept(candidate: torch.Tensor, clean: torch.Tensor, member: AttackConfig) -> torch.Tensor:
        return victim.accept(candidate, clean, member.eps, member.norm)  # type: ignore[misc]

    generator = torch.Generator(device=victim.device).manual_seed(seed)
    count = len(rows)
    # Results go straight into tensors sized once: nothing small is kept per batch, which would pin
    # the allocator's heap between the batches' large temporaries and grow memory with the data.
    fooled_by = torch.full((count,), -1, dtype=torch.long)
    predictions = torch.full((count,), -1, dtype=torch.long)
    targets = torch.full((count,), -1, dtype=torch.long)
    adversarials = x.new_empty((count, *x.shape[1:]), device="cpu") if keep_adversarials else None
    largest = 0.0
    for start in range(0, count, batch_size):
        chosen = rows[start:start + batch_size]
        xb = x[chosen].to(victim.device, non_blocking=True)
        yb = y[chosen].to(victim.device, non_blocking=True)
        outcome = run_sequence(victim.judge, xb, yb, members, generator=generator, attacker=attacker,
                               accept=accept if victim.accept is not None else None)
        largest = max(largest, attack.threat.check(xb, outcome.x_adv, attack.name))
        predicted = predict(victim.judge, outcome.x_adv)
        disagree = int(((predicted != yb) != (outcome.fooled_by >= 0)).sum())
        if disagree:
            raise AttackError(
                f"{attack.name}: re-classifying its adversarial examples disagrees with the attack's own "
                f"bookkeeping on {disagree} of {len(xb)} samples (are the model's outputs random or "
                "batch-dependent?); the result is not reported")
        done = slice(start, start + len(xb))
        fooled_by[done] = outcome.fooled_by.cpu()
        predictions[done] = predicted.cpu()
        targets[done] = outcome.targets.cpu()
        if adversarials is not None:
            adversarials[done] = outcome.x_adv.cpu()
        if on_batch is not None:
            on_batch(len(xb))
    return AttackedSamples(fooled_by=fooled_by, predictions=predictions, targets=targets, largest=largest,
                           queries=counter.count, adversarials=adversarials)


def share(mask: torch.Tensor) -> Optional[float]:
    """The share of True in `mask`; None when it is empty."""
    return float(mask.float().mean()) if mask.numel() else None


@dataclass
class RadiusOutcome:
    """One attack at one radius: the robust samples, the member that fooled each sample (-1: none),
    and the result."""

    robust: torch.Tensor
    broken_by: torch.Tensor
    result: AttackResult


def attack_over_radii(
    victim: Victim,
    x: torch.Tensor,
    y: torch.Tensor,
    clean: torch.Tensor,
    attacks: list[AttackConfig],
    *,
    num_classes: int,
    batch_size: int,
    seed: int,
    on_progress: Optional[Progress] = None,
) -> list[RadiusOutcome]:
    """One attack at increasing radii (`attacks`, one per radius), each time only on the clean-correct
    samples it has not fooled yet."""
    broken_by = torch.full((len(x),), -1, dtype=torch.long)
    outcomes = []
    for attack in attacks:
        members = attack.members(num_classes)
        started = time.perf_counter()
        carried = int((clean & (broken_by >= 0)).sum()) if attack.eps > 0 else 0
        todo = (clean & (broken_by == -1)).nonzero().squeeze(1) if attack.eps > 0 else torch.empty(0, dtype=torch.long)
        stage, done = f"{attack.name} eps={attack.eps:g}", 0

        def advance(batch: int, stage: str = stage, size: int = len(todo)) -> None:
            nonlocal done
            done += batch
            if on_progress is not None:
                on_progress(stage, done, size)

        outcome = attack_samples(victim, x, y, attack, rows=todo, num_classes=num_classes, batch_size=batch_size,
                                 seed=seed, on_batch=advance)
        fooled = outcome.fooled_by >= 0
        broken_by[todo[fooled]] = outcome.fooled_by[fooled]
        robust = clean & (broken_by == -1)
        hit_rate, untargetable = None, 0
        if attack.target is not None:
            aimed = (outcome.targets >= 0) & (outcome.targets != y[todo])
            untargetable = int(((outcome.targets >= 0) & ~aimed).sum())
            hit_rate = share((outcome.predictions == outcome.targets)[aimed])
        counts = torch.bincount(outcome.fooled_by[fooled], minlength=len(members)).tolist()
        member_rows = [{"name": member.name, "target": member.target, "fooled": counts[position]}
                       for position, member in enumerate(members)] if len(members) > 1 else []
        white_box = not all(member.black_box for member in members)
        black_box = any(member.black_box for member in members)
        result = AttackResult(
            attack, float(robust.float().mean()), time.perf_counter() - started, outcome.largest, attacked=len(todo),
            carried=carried, members=member_rows, target_hit_rate=hit_rate, untargetable=untargetable,
            transfer_from=victim.transfer_from if white_box else None,
            queries_mean=outcome.queries / len(todo) if len(todo) and black_box else None,
        )
        outcomes.append(RadiusOutcome(robust.clone(), broken_by.clone(), result))
    return outcomes
