"""What an evaluation measured: per attack and radius, the curve, per class, sanity checks, and the
report with everything needed to rerun it (its JSON form is what ``advcli eval --json`` prints)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..attacks.config import AttackConfig
from ..io.provenance import package_versions, utc_now
from .config import EvalConfig
from .sanity import SanityCheck

# Bumped when a key of the JSON report changes meaning or goes away (new keys may appear any time).
REPORT_SCHEMA_VERSION = 1


@dataclass
class AttackResult:
    """One attack at one radius. `attacked` samples were attacked; `carried` were already fooled at a
    smaller radius (not attacked again); `members` says what each member of ``auto`` fooled."""

    attack: AttackConfig
    robust_accuracy: float
    seconds: float
    max_perturbation: float
    attacked: int = 0
    carried: int = 0
    members: list[dict[str, Any]] = field(default_factory=list)
    target_hit_rate: Optional[float] = None
    untargetable: int = 0
    transfer_from: Optional[str] = None  # the checkpoint that crafted white-box examples, when not the model
    queries_mean: Optional[float] = None  # black-box queries per attacked sample, as counted

    @property
    def label(self) -> str:
        """The attack's name with what sets it apart, e.g. ``bim (transfer from runs/x)``."""
        a = self.attack
        notes = ([] if a.clip else ["no clip"]) + ([] if a.norm == "linf" else [a.norm])
        notes += [f"transfer from {self.transfer_from}"] if self.transfer_from else []
        return a.name + "".join(f" ({note})" for note in notes) + (f" → {a.target}" if a.target is not None else "")

    def to_dict(self) -> dict[str, Any]:
        result = {**self.attack.to_dict(), "label": self.label, "transfer_from": self.transfer_from,
                  "robust_accuracy": self.robust_accuracy,
                  "max_perturbation": self.max_perturbation, "seconds": round(self.seconds, 3),
                  "attacked": self.attacked, "carried": self.carried}
        if self.queries_mean is not None:
            result["queries_mean"] = round(self.queries_mean, 2)
        if self.members:
            result["members"] = self.members
        if self.attack.target is not None:
            result["target_hit_rate"] = self.target_hit_rate
            result["untargetable"] = self.untargetable
        return result


@dataclass
class CurvePoint:
    """Robust accuracy at one radius: worst case over the attacks, and each attack's own."""

    eps: float
    robust_accuracy: float
    attacks: list[AttackResult]

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "robust_accuracy": self.robust_accuracy,
                "attacks": [result.to_dict() for result in self.attacks]}


@dataclass
class ClassResult:
    """Clean and robust accuracy of the samples of one class."""

    index: int
    name: str
    samples: int
    clean_accuracy: Optional[float]
    robust_accuracy: Optional[float]
    attacks: dict[str, Optional[float]]
    curve: list[Optional[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.index, "name": self.name, "samples": self.samples,
                "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
                "attacks": self.attacks, "curve": self.curve}


@dataclass
class EvalReport:
    """What an evaluation measured, with everything needed to rerun it."""

    model: str
    model_fingerprint: str
    data: str
    data_fingerprint: str
    split: str
    samples: int
    device: str
    clean_accuracy: float
    attacks: list[AttackResult]
    robust_accuracy: float
    failures: list[str]
    config: EvalConfig
    seconds: float
    created: str = field(default_factory=utc_now)
    curve: list[CurvePoint] = field(default_factory=list)
    per_class: Optional[list[ClassResult]] = None
    sanity: list[SanityCheck] = field(default_factory=list)
    num_classes: int = 0
    backend: str = "torch"
    execution_providers: Optional[list[str]] = None  # onnxruntime only: as read back from the session
    notes: list[str] = field(default_factory=list)  # e.g. a device fallback
    transfer_fingerprint: Optional[str] = None  # weights that crafted transfer attacks
    precision: str = "fp32"  # what white-box attack gradients ran in; fp32 when no torch model crafts
    white_box: Optional[dict[str, Any]] = None  # what crafted the white-box attacks, and why (victims.prepare)
    warnings: list[str] = field(default_factory=list)  # signs that the input contract misdescribes the model

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "data": self.data,
            "data_fingerprint": self.data_fingerprint,
            "split": self.split,
            "samples": self.samples,
            "device": self.device,
            "precision": self.precision,
            "backend": self.backend,
            "execution_providers": self.execution_providers,
            "notes": self.notes,
            "transfer_from_fingerprint": self.transfer_fingerprint,
            "white_box": self.white_box,
            "contract": asdict(self.config.contract),
            "warnings": self.warnings,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "attacks": [result.to_dict() for result in self.attacks],
            "eps": [point.eps for point in self.curve],
            "norm": self.config.threats.norm,
            "curve": [point.to_dict() for point in self.curve],
            **({"per_class": [row.to_dict() for row in self.per_class]} if self.per_class is not None else {}),
            "sanity": [check.to_dict() for check in self.sanity],
            "passed": self.passed,
            "failures": self.failures,
            "thresholds": {"min_accuracy": self.config.gate.min_accuracy,
                           "min_robust_accuracy": self.config.gate.min_robust_accuracy},
            "config": self.config.flat(),
            "versions": package_versions(),
            "created": self.created,
            "seconds": round(self.seconds, 3),
        }
