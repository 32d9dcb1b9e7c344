"""What decides an evaluation, as small value objects (saved flat with every report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..attacks.config import AttackConfig, resolve_attack
from ..errors import AdvcliError
from ..runtime.backends import BACKENDS
from ..runtime.device import DEVICES
from ..runtime.onnx_import.contract import InputContract
from ..runtime.precision import check_precision
from ..settings import FlatSettings, check_seed
from ..threat import NORMS, ThreatModel

SPLITS = ("train", "test")


def _is_count(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


@dataclass(frozen=True)
class Sampling:
    """Which samples: the `split`, a seeded subset of `samples` of it (None: all), the `seed` of the
    subset and of the attacks' random starts."""

    split: str = "test"
    samples: Optional[int] = None
    seed: int = 0

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise AdvcliError(f"`split` must be train or test, got {self.split!r}", param="split")
        if self.samples is not None and not _is_count(self.samples, 1):
            raise AdvcliError(f"`samples` must be >= 1, got {self.samples}", param="samples")
        check_seed(self.seed)


@dataclass(frozen=True)
class Threats:
    """The threat at one or several radii (a list gives a curve; the largest is the headline)."""

    eps: float | tuple[float, ...] = 0.1
    norm: str = "linf"
    clip: bool = True

    def eps_values(self) -> tuple[float, ...]:
        """The radii to evaluate, increasing."""
        values = self.eps if isinstance(self.eps, (tuple, list)) else (self.eps,)
        if not values:
            raise AdvcliError("give at least one `eps`", param="eps")
        try:
            return tuple(sorted({float(value) for value in values}))
        except (TypeError, ValueError):
            raise AdvcliError(f"`eps` must be numbers, got {self.eps!r}", param="eps") from None

    def at(self, eps: float) -> ThreatModel:
        return ThreatModel(eps, self.norm, self.clip)


@dataclass(frozen=True)
class AttackOptions:
    """Attack parameters; None takes each attack's own default (:func:`advcli.attacks.resolve_attack`)."""

    alpha: Optional[float] = None
    iters: Optional[int] = None
    restarts: int = 1
    init: Optional[str] = None
    target: Optional[str] = None
    queries: Optional[int] = None


@dataclass(frozen=True)
class Runtime:
    """Where and how: the `device` choice, the `precision` of attack gradients, samples per batch."""

    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 500

    def validate(self) -> None:
        DEVICES.check(self.device)
        check_precision(self.precision)
        if not _is_count(self.batch_size, 1):
            raise AdvcliError(f"`batch_size` must be >= 1, got {self.batch_size}", param="batch_size")


@dataclass(frozen=True)
class Gate:
    """CI thresholds: a report below either fails (exit 1 on the command line)."""

    min_accuracy: Optional[float] = None
    min_robust_accuracy: Optional[float] = None

    def validate(self) -> None:
        for name in ("min_accuracy", "min_robust_accuracy"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise AdvcliError(f"`{name}` must be in [0, 1], got {value}", param=name)


@dataclass(frozen=True)
class EvalConfig(FlatSettings):
    """Everything that decides an evaluation; saved (flat) with every report.

    `model` is a run folder, an ONNX file or (trusted) a TorchScript or torch.export file (None: the
    newest run); `data` a data spec (None: the model's own); `backend` None follows from the model
    path; `contract` says what a foreign model takes and gives; `convert` lets an ONNX file be
    converted to torch for white-box attacks; `source` is the checkpoint that crafts white-box
    attacks when the model cannot (transfer); `trust_pickled_model` allows loading files that run
    code when loaded.
    """

    model: Optional[str] = None
    data: Optional[str] = None
    attacks: tuple[str, ...] = ("bim",)
    threats: Threats = field(default_factory=Threats)
    attack_options: AttackOptions = field(default_factory=AttackOptions)
    sampling: Sampling = field(default_factory=Sampling)
    runtime: Runtime = field(default_factory=Runtime)
    gate: Gate = field(default_factory=Gate)
    per_class: bool = False
    sanity_samples: int = 100
    backend: Optional[str] = None
    source: Optional[str] = None
    contract: InputContract = field(default_factory=InputContract)
    convert: bool = True
    trust_pickled_model: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "attacks", tuple(self.attacks) if not isinstance(self.attacks, str) else (self.attacks,))

    def eps_values(self) -> tuple[float, ...]:
        return self.threats.eps_values()

    def resolved_attacks(self, eps: Optional[float] = None) -> list[AttackConfig]:
        """The attacks at radius `eps` (default: the largest radius)."""
        if not self.attacks:
            raise AdvcliError("give at least one `attack`", param="attacks")
        eps = self.eps_values()[-1] if eps is None else eps
        options = self.attack_options
        return [resolve_attack(name, eps=eps, alpha=options.alpha, iters=options.iters, restarts=options.restarts,
                               init=options.init, clip=self.threats.clip, norm=self.threats.norm,
                               target=options.target, queries=options.queries)
                for name in dict.fromkeys(self.attacks)]

    def validate(self) -> None:
        """Reject impossible settings before any model or data is loaded."""
        self.sampling.validate()
        self.runtime.validate()
        self.gate.validate()
        NORMS.check(self.threats.norm)
        if self.backend is not None:
            BACKENDS.check(self.backend)
        if not _is_count(self.sanity_samples, 0):
            raise AdvcliError(f"`sanity_samples` must be >= 0, got {self.sanity_samples}", param="sanity_samples")
        for eps in self.eps_values():
            self.resolved_attacks(eps)


MAX_CLASS_NAMES_BYTES = 1 << 20


def read_class_names(text: Optional[str]) -> Optional[str | tuple[str, ...]]:
    """`text` as the command line gives it: names separated by commas, or a text file (one name per
    line, at most 1 MiB) when it names one."""
    from pathlib import Path

    if text is None or "," in text or not Path(text).is_file():
        return text
    path = Path(text)
    if path.stat().st_size > MAX_CLASS_NAMES_BYTES:
        raise AdvcliError(f"`class_names` file {path} is over {MAX_CLASS_NAMES_BYTES:,} bytes", param="class_names")
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise AdvcliError(f"`class_names` file {path} is not UTF-8 text", param="class_names") from None
    return names


def parse_eps(text: str) -> float | tuple[float, ...]:
    """``"0.1"`` -> 0.1; ``"0,0.02,0.05"`` -> (0.0, 0.02, 0.05); ``"8/255"`` -> 8/255, as `eps` is written."""
    try:
        values = tuple(_number(part) for part in str(text).split(","))
    except (ValueError, ZeroDivisionError):
        raise AdvcliError(f"`eps` must be a number or a comma-separated list of numbers, got {text!r}",
                          param="eps") from None
    return values[0] if len(values) == 1 else values


def _number(text: str) -> float:
    """A number, or a fraction ``a/b`` (radii are often written so: 8/255)."""
    numerator, slash, denominator = text.strip().partition("/")
    return float(numerator) / float(denominator) if slash else float(numerator)
