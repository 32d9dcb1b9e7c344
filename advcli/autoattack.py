"""Attack sequences: ``auto`` (after AutoAttack, Croce & Hein, 2020) and the Square wrapper.

``auto`` runs APGD-CE, then targeted APGD-DLR towards each of the clean input's top-k most likely
wrong classes (k = 3, fewer when the model has fewer classes; targeted cross-entropy below 4
classes), then Square, all in the same norm (L-inf or L2), as AutoAttack's standard version does.
Each member attacks only the samples that every member before
it failed on, so the result is the per-sample worst case over the members at the cost of little
more than the first member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .attacks import (
    AttackConfig, _check_inputs, attack_mode, best_of_restarts, choose_targets, predict, resolve_attack,
    validate_attack_args,
)
from .precision import deciding_model
from .square import square_attack, torch_logits

AUTO_TARGETS = 3
SQUARE_P_INIT = 0.8


def _cpu_generator(generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
    """Square draws on the CPU; derive a CPU generator from one that may live on another device."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def square(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    queries: int = 1000,
    p_init: float = SQUARE_P_INIT,
    restarts: int = 1,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
) -> torch.Tensor:
    """The Square attack (score-based black box) in the L-inf or the L2 `norm` on a torch model,
    with restarts on the samples still correctly classified. Each run spends at most `queries`
    queries per sample. Handed a reduced-precision wrapper, it queries the float32 model behind it."""
    validate_attack_args(eps=eps, alpha=max(eps, 1e-12), steps=max(queries, 1), restarts=restarts, norm=norm)
    _check_inputs(x, y)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    cpu_generator = _cpu_generator(generator)
    with attack_mode(model):
        logits = torch_logits(deciding_model(model))

        def run_once(todo: torch.Tensor) -> torch.Tensor:
            x_adv, _ = square_attack(logits, x[todo].detach(), y[todo], eps=eps, queries=queries, p_init=p_init,
                                     clip=clip, generator=cpu_generator, norm=norm)
            return x_adv

        return best_of_restarts(model, x, y, None, restarts, run_once)


def auto_members(config: AttackConfig, num_classes: int) -> list[AttackConfig]:
    """The attacks ``auto`` runs, in order, for a model with `num_classes` classes."""
    apgd = {"eps": config.eps, "alpha": config.alpha, "iters": config.iters, "restarts": config.restarts,
            "init": config.init, "clip": config.clip, "norm": config.norm}
    members = [AttackConfig("apgd-ce", **apgd)]
    targeted_loss = "apgd-dlr" if num_classes >= 4 else "apgd-ce"
    for rank in range(1, min(AUTO_TARGETS, num_classes - 1) + 1):
        members.append(AttackConfig(targeted_loss, **apgd, target=f"top-{rank}"))
    members.append(resolve_attack("square", eps=config.eps, clip=config.clip, queries=config.queries, norm=config.norm))
    return members


# Attacks that are sequences of other attacks; any other attack is a sequence of itself.
COMPOSITES: dict[str, Callable[[AttackConfig, int], list[AttackConfig]]] = {"auto": auto_members}


def attack_members(config: AttackConfig, num_classes: int) -> list[AttackConfig]:
    """The attacks that `config` runs, in order: its members for ``auto``, else itself."""
    expand = COMPOSITES.get(config.name)
    return expand(config, num_classes) if expand is not None else [config]


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
) -> SequenceOutcome:
    """Run `members` in order, each on the samples that no earlier member fooled.

    `model` judges which samples are fooled; `attacker(member)` (default: `model`) is what a member
    attacks, e.g. a source checkpoint for transfer or a query-counting wrapper.
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
        with attack_mode(model):
            fooled = predict(model, candidate) != y[todo]
        x_adv[todo] = candidate
        fooled_by[todo[fooled]] = index
    return SequenceOutcome(x_adv=x_adv, fooled_by=fooled_by, targets=targets)


def auto(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    alpha: Optional[float] = None,
    steps: int = 100,
    random_start: bool = True,
    restarts: int = 1,
    queries: int = 1000,
    clip: bool = True,
    generator: Optional[torch.Generator] = None,
    norm: str = "linf",
) -> torch.Tensor:
    """AutoAttack-style worst case: APGD-CE, targeted APGD-DLR on the top-3 wrong classes, then
    Square, all in `norm`, each only on the samples still correctly classified. Clean errors are left as
    they are. Handed a reduced-precision wrapper, the gradient members craft on it while its float32
    model decides which samples are fooled (and answers Square's queries)."""
    config = resolve_attack("auto", eps=eps, alpha=alpha, iters=steps, restarts=restarts,
                            init="random" if random_start else "zero", clip=clip, norm=norm, queries=queries)
    _check_inputs(x, y)
    if eps == 0 or x.shape[0] == 0:
        return x.detach().clone()
    judge = deciding_model(model)
    with torch.no_grad(), attack_mode(model):
        logits = judge(x)
    correct = (logits.argmax(1) == y).nonzero().squeeze(1)
    x_adv = x.detach().clone()
    if correct.numel():
        members = auto_members(config, logits.shape[1])
        outcome = run_sequence(judge, x[correct], y[correct], members, generator=generator,
                               attacker=None if judge is model else lambda member: model)
        x_adv[correct] = outcome.x_adv
    return x_adv

