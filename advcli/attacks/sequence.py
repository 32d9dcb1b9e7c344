"""Running attacks in sequence, each only on the samples that no earlier one fooled: the result is
the per-sample worst case over them at little more than the cost of the first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..runtime.execution import attack_mode, predict
from .config import AttackConfig
from .targets import choose_targets


@dataclass
class SequenceOutcome:
    """What a sequence of attacks did to a batch.

    `fooled_by` holds, per sample, the index of the first member whose output was misclassified
    (-1: none was); `targets` the class a targeted single member aimed at (-1: untargeted).
    """

    x_adv: torch.Tensor
    fooled_by: torch.Tensor
    targets: torch.Tensor


def run_sequence(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    members: Sequence[AttackConfig],
    *,
    generator: Optional[torch.Generator] = None,
    attacker: Optional[Callable[[AttackConfig], nn.Module]] = None,
    accept: Optional[Callable[[torch.Tensor, torch.Tensor, AttackConfig], torch.Tensor]] = None,
) -> SequenceOutcome:
    """Run `members` in order, each on the samples that no earlier member fooled.

    `model` judges which samples are fooled; `attacker(member)` (default: `model`) is what a member
    attacks, e.g. a source checkpoint for transfer or a query-counting wrapper. `accept(candidate,
    clean, member)` moves each member's candidates onto the inputs the model accepts (e.g. a uint8
    grid) before they are judged, so what is judged is what is kept.
    Returns, per sample, the first misclassified point found, else the last member's best try.
    """
    x_adv = x.detach().clone()
    fooled_by = torch.full((x.shape[0],), -1, dtype=torch.long, device=x.device)
    targets = torch.full_like(fooled_by, -1)
    for index, member in enumerate(members):
        todo = (fooled_by == -1).nonzero().squeeze(1)
        if todo.numel() == 0:
            break
        attacked = model if attacker is None else attacker(member)
        member_targets = None
        if member.target is not None:
            member_targets = choose_targets(attacked, x[todo], y[todo], member.target, generator=generator)
            if len(members) == 1:
                targets[todo] = member_targets
        candidate = member.run(attacked, x[todo], y[todo], generator=generator, targets=member_targets)
        if accept is not None:
            candidate = accept(candidate, x[todo], member)
        with attack_mode(model):
            fooled = predict(model, candidate) != y[todo]
        x_adv[todo] = candidate
        fooled_by[todo[fooled]] = index
    return SequenceOutcome(x_adv=x_adv, fooled_by=fooled_by, targets=targets)
