"""What a verification measured: per radius the verdict counts, certified and attacked accuracy and
every sample's verdict; per class; and the report with everything needed to rerun it (its JSON form
is what ``advcli verify --json`` prints)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from ..attacks.config import AttackConfig
from ..io.provenance import package_versions, utc_now
from .config import VerifyConfig

# Bumped when a key of the JSON report changes meaning or goes away (new keys may appear any time).
REPORT_SCHEMA_VERSION = 1


def _rounded(value: float) -> Optional[float]:
    return None if math.isnan(value) else round(value, 6)


@dataclass
class RadiusResult:
    """One radius: the share verified (certified accuracy), the share no counterexample was found
    for (the attacks' robust accuracy), the unproven share between them; what violated how many
    samples (``clean`` for clean errors, then each attack); every sample's verdict and smallest
    margin lower bound (None where it was violated before being bounded)."""

    eps: float
    verified: int
    violated: int
    unproven: int
    violated_by: dict[str, int]
    recomputed: int
    attack_seconds: float
    bound_seconds: float
    verdicts: list[str] = field(default_factory=list)
    worst_margins: list[float] = field(default_factory=list)

    @property
    def samples(self) -> int:
        return self.verified + self.violated + self.unproven

    @property
    def certified_accuracy(self) -> float:
        return self.verified / max(1, self.samples)

    @property
    def robust_accuracy(self) -> float:
        return 1 - self.violated / max(1, self.samples)

    @property
    def unproven_share(self) -> float:
        return self.unproven / max(1, self.samples)

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "certified_accuracy": self.certified_accuracy,
                "robust_accuracy": self.robust_accuracy, "unproven_share": self.unproven_share,
                "verified": self.verified, "violated": self.violated, "unproven": self.unproven,
                "violated_by": self.violated_by, "recomputed_in_float64": self.recomputed,
                "attack_seconds": round(self.attack_seconds, 3), "bound_seconds": round(self.bound_seconds, 3),
                "verdicts": self.verdicts, "worst_margin_lower_bound": [_rounded(v) for v in self.worst_margins]}


@dataclass
class ClassRow:
    """Clean accuracy, and certified and attacked accuracy at every radius, of one class's samples."""

    index: int
    name: str
    samples: int
    clean_accuracy: Optional[float]
    certified: list[Optional[float]]
    robust: list[Optional[float]]

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.index, "name": self.name, "samples": self.samples,
                "clean_accuracy": self.clean_accuracy, "certified_accuracy": self.certified,
                "robust_accuracy": self.robust}


@dataclass
class VerifyReport:
    """What a verification measured, with everything needed to rerun it."""

    model: str
    model_fingerprint: Optional[str]
    data: str
    data_fingerprint: Optional[str]
    split: str
    indices: list[int]
    labels: list[int]
    device: str
    precision: str
    clean_accuracy: float
    curve: list[RadiusResult]
    attacks: list[AttackConfig]
    failures: list[str]
    config: VerifyConfig
    seconds: float
    num_classes: int
    created: str = field(default_factory=utc_now)
    per_class: Optional[list[ClassRow]] = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conversion: Optional[dict[str, Any]] = None  # an ONNX file's conversion: parity, operators, seconds

    @property
    def samples(self) -> int:
        return len(self.indices)

    @property
    def certified_accuracy(self) -> float:
        return self.curve[-1].certified_accuracy

    @property
    def robust_accuracy(self) -> float:
        return self.curve[-1].robust_accuracy

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        bounds = self.config.bounds
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "model": self.model, "model_fingerprint": self.model_fingerprint,
            "data": self.data, "data_fingerprint": self.data_fingerprint,
            "split": self.split, "samples": self.samples, "seed": self.config.sampling.seed,
            "device": self.device, "precision": self.precision, "notes": self.notes, "warnings": self.warnings,
            **({"conversion": self.conversion} if self.conversion is not None else {}),
            "norm": "linf", "method": bounds.method, "intermediate": bounds.resolved_intermediate,
            "clean_accuracy": self.clean_accuracy, "certified_accuracy": self.certified_accuracy,
            "robust_accuracy": self.robust_accuracy, "unproven_share": self.curve[-1].unproven_share,
            "eps": [point.eps for point in self.curve],
            "attacks": [attack.to_dict() for attack in self.attacks],
            "curve": [point.to_dict() for point in self.curve],
            **({"per_class": [row.to_dict() for row in self.per_class]} if self.per_class is not None else {}),
            "sample_indices": self.indices, "labels": self.labels,
            "passed": self.passed, "failures": self.failures,
            "thresholds": {"min_accuracy": self.config.gate.min_accuracy,
                           "min_certified_accuracy": self.config.gate.min_certified_accuracy},
            "config": self.config.flat(), "versions": package_versions(),
            "created": self.created, "seconds": round(self.seconds, 3),
        }
