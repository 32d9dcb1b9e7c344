"""What decides a verification, as small value objects (saved flat with every report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..attacks.config import AttackConfig, resolve_attack
from ..errors import AdvcliError
from ..evaluation.config import Runtime, Sampling
from ..runtime.onnx_import.contract import InputContract
from ..settings import FlatSettings
from .bounds import check_eps, resolve_intermediate

# The attacks that look for counterexamples: PGD (cheap, before the bounds), then APGD with the
# cross-entropy and the DLR losses (AutoAttack's white-box pair) on the samples left unproven.
DEFAULT_ATTACKS = ("pgd", "apgd-ce", "apgd-dlr")


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class Bounds:
    """The radii (L-inf, inside [0, 1]; a list gives a curve, the largest is the headline) and how
    the margins are bounded: the registered `method`, its `intermediate` bounds (None: the method's
    default) and alpha-CROWN's slope updates `alpha_steps`."""

    eps: float | tuple[float, ...] = 0.1
    method: str = "crown"
    intermediate: Optional[str] = None
    alpha_steps: int = 20

    def eps_values(self) -> tuple[float, ...]:
        """The radii to verify, increasing."""
        values = self.eps if isinstance(self.eps, (tuple, list)) else (self.eps,)
        if not values:
            raise AdvcliError("give at least one `eps`", param="eps")
        for value in values:
            check_eps(value)
        return tuple(sorted({float(value) for value in values}))

    @property
    def resolved_intermediate(self) -> str:
        return resolve_intermediate(self.method, self.intermediate)

    def validate(self) -> None:
        self.eps_values()
        resolve_intermediate(self.method, self.intermediate)
        if not _is_count(self.alpha_steps, 0):
            raise AdvcliError(f"`alpha_steps` must be an integer >= 0, got {self.alpha_steps!r}", param="alpha_steps")


@dataclass(frozen=True)
class Falsification:
    """The attacks that look for counterexamples, in order (each with its own defaults; `iters`
    and `restarts` apply to all of them when given). Empty: bounds only."""

    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    iters: Optional[int] = None
    restarts: int = 1


@dataclass(frozen=True)
class VerifyGate:
    """CI thresholds: a report below either fails (exit 1 on the command line)."""

    min_accuracy: Optional[float] = None
    min_certified_accuracy: Optional[float] = None

    def validate(self) -> None:
        for name in ("min_accuracy", "min_certified_accuracy"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and 0 <= value <= 1):
                raise AdvcliError(f"`{name}` must be in [0, 1], got {value}", param=name)


@dataclass(frozen=True)
class VerifyConfig(FlatSettings):
    """Everything that decides a verification; saved (flat) with every report.

    `model` is a run folder or an ONNX file (None: the newest run); `data` a data spec (None: the
    model's own); `contract` says what an ONNX file takes and gives (as for ``eval``). Verification is
    in the L-inf norm with inputs kept inside [0, 1] pixel units, as the bounds assume.
    """

    model: Optional[str] = None
    data: Optional[str] = None
    bounds: Bounds = field(default_factory=Bounds)
    falsification: Falsification = field(default_factory=Falsification)
    sampling: Sampling = field(default_factory=Sampling)
    runtime: Runtime = field(default_factory=Runtime)
    gate: VerifyGate = field(default_factory=VerifyGate)
    per_class: bool = False
    contract: InputContract = field(default_factory=InputContract)

    def __post_init__(self) -> None:
        attacks = self.falsification.attacks
        if isinstance(attacks, str) or not isinstance(attacks, tuple):
            fixed = (attacks,) if isinstance(attacks, str) else tuple(attacks)
            object.__setattr__(self, "falsification", Falsification(fixed, self.falsification.iters,
                                                                    self.falsification.restarts))

    def eps_values(self) -> tuple[float, ...]:
        return self.bounds.eps_values()

    def resolved_attacks(self, eps: float) -> list[AttackConfig]:
        """The counterexample attacks at radius `eps` (none at eps 0: the ball is the sample)."""
        if eps == 0:
            return []
        options = self.falsification
        return [resolve_attack(name, eps=eps, iters=options.iters, restarts=options.restarts, clip=True, norm="linf")
                for name in dict.fromkeys(options.attacks)]

    def validate(self) -> None:
        """Reject impossible settings before any model or data is loaded."""
        self.bounds.validate()
        self.sampling.validate()
        self.runtime.validate()
        self.gate.validate()
        radii = [eps for eps in self.eps_values() if eps > 0] or [0.1]  # attack names are checked even at eps 0
        for eps in radii:
            self.resolved_attacks(eps)
