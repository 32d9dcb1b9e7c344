"""What an attack is (:class:`AttackSpec`, registered per attack) and one fully resolved attack with
its parameters (:class:`AttackConfig`, made by :func:`resolve_attack`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import AttackError
from ..threat import INITS, ThreatModel
from .core import validate_attack_args
from .methods import ATTACKS
from .targets import choose_targets, parse_target

AttackFn = Callable[..., torch.Tensor]
KINDS = ("single-step", "iterative", "black-box", "ensemble")
DEFAULT_QUERIES = 1000


def gradient_options(config: "AttackConfig") -> dict[str, Any]:
    """The keyword options of a gradient attack, from its config."""
    return {"alpha": config.alpha, "iters": config.iters, "init": config.init, "restarts": config.restarts}


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack.

    `run` is the attack function; `kind` one of :data:`KINDS` (what the sanity checks know it as);
    `defaults(eps, iters, norm)` gives the default ``alpha``, ``iters`` and ``init``; `options(config)`
    the keyword options `run` takes beyond ``eps, clip, generator, norm, target``. `targeted` says
    whether it takes a target (`untargeted_reason` says why not); `queries` whether it has a Square
    query budget; `budget_is_queries` that its ``iters`` is that budget and ``alpha`` its own
    default (Square's p_init); `inits` the starts it accepts; `fixed_iters` an iteration count it
    insists on; `members(config, num_classes)` the attacks a composite runs, in order;
    `default_queries` the Square budget when none is given.
    """

    run: AttackFn
    kind: str
    defaults: Callable[[float, Optional[int], str], dict[str, Any]]
    options: Callable[["AttackConfig"], dict[str, Any]] = gradient_options
    targeted: bool = True
    untargeted_reason: str = "untargeted only"
    queries: bool = False
    budget_is_queries: bool = False
    inits: tuple[str, ...] = ("zero", "random")
    fixed_iters: Optional[int] = None
    members: Optional[Callable[["AttackConfig", int], list["AttackConfig"]]] = None
    default_queries: int = DEFAULT_QUERIES

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"attack kind must be one of {KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class AttackConfig:
    """One fully resolved attack: what ran, with which parameters.

    For ``square``, `alpha` is the initial square fraction p_init and `iters` the query budget;
    for ``auto``, `alpha`, `iters`, `init` and `restarts` configure its APGD members and
    `queries` its Square member.
    """

    name: str
    threat: ThreatModel
    alpha: float
    iters: int
    restarts: int = 1
    init: str = "zero"
    target: Optional[str] = None
    queries: Optional[int] = None
    spec: AttackSpec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", ATTACKS.get(self.name))

    @property
    def eps(self) -> float:
        return self.threat.eps

    @property
    def norm(self) -> str:
        return self.threat.norm

    @property
    def clip(self) -> bool:
        return self.threat.clip

    @property
    def black_box(self) -> bool:
        return self.spec.kind == "black-box"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps, "alpha": self.alpha, "iters": self.iters,
                "restarts": self.restarts, "init": self.init, "clip": self.clip, "norm": self.norm,
                "target": self.target, "queries": self.queries}

    def members(self, num_classes: int) -> list["AttackConfig"]:
        """The attacks this config runs, in order: a composite's members, else itself."""
        return [self] if self.spec.members is None else self.spec.members(self, num_classes)

    def run(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
        targets: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Attack `x`; a targeted config draws its targets (unless given) and leaves samples whose
        target is their own label unattacked."""
        common = {"eps": self.eps, "clip": self.clip, "generator": generator, "norm": self.norm,
                  **self.spec.options(self)}
        if self.target is not None and targets is None:
            targets = choose_targets(model, x, y, self.target, generator=generator)
        if targets is None:
            return self.spec.run(model, x, y, **common)
        attackable = targets != y
        x_adv = x.detach().clone()
        if bool(attackable.any()):
            x_adv[attackable] = self.spec.run(model, x[attackable], y[attackable], **common,
                                              target=targets[attackable])
        return x_adv


def resolve_attack(
    name: str,
    *,
    eps: float = 0.1,
    alpha: Optional[float] = None,
    iters: Optional[int] = None,
    restarts: int = 1,
    init: Optional[str] = None,
    clip: bool = True,
    norm: str = "linf",
    target: Optional[str] = None,
    queries: Optional[int] = None,
) -> AttackConfig:
    """Fill in an attack's defaults and validate everything eagerly.

    `queries` is the Square budget (``square`` and ``auto``); Square ignores `alpha` and `iters`.
    """
    spec = ATTACKS.get(name)
    threat = ThreatModel(eps, norm, clip)
    if queries is not None and (not isinstance(queries, int) or isinstance(queries, bool) or queries < 1):
        raise AttackError(f"`queries` must be an integer >= 1, got {queries}", param="queries")
    defaults = spec.defaults(threat.eps, iters, norm)
    init = INITS.check(defaults["init"] if init is None else init)
    if init not in spec.inits:
        raise AttackError(f"{name} always starts from a {spec.inits[0]} point; it takes no `init` {init}", param="init")
    if target is not None:
        if not spec.targeted:
            raise AttackError(f"{name} takes no `target` ({spec.untargeted_reason})", param="target")
        target = str(target).strip().lower()
        parse_target(target)
    if spec.budget_is_queries:
        alpha, iters = None, queries or spec.default_queries
    config = AttackConfig(
        name=name, threat=threat, alpha=float(defaults["alpha"] if alpha is None else alpha),
        iters=int(defaults["iters"] if iters is None else iters), restarts=restarts, init=init, target=target,
        queries=(queries or spec.default_queries) if spec.queries else None,
    )
    if spec.fixed_iters is not None and config.iters != spec.fixed_iters:
        count = "one step" if spec.fixed_iters == 1 else f"{spec.fixed_iters} steps"
        raise AttackError(f"{name} takes exactly {count}, got `iters`={config.iters}; use bim or pgd for more",
                          param="iters")
    validate_attack_args(threat=threat, alpha=config.alpha, iters=config.iters, restarts=config.restarts, init=init)
    return config
