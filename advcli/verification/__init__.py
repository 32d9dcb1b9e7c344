"""Formal L-inf robustness verification by bound propagation (IBP, CROWN, alpha-CROWN).

A model (any torch module of supported layers, or a torch.fx GraphModule of them) becomes a
:class:`BoundGraph`; :func:`margin_bounds` bounds its margins ``z_y - z_j`` over the ball of
radius eps around each input within [0, 1]; :func:`verify_batch` turns those bounds and advcli's
attacks into per-sample verdicts (verified, violated, unproven); :func:`ibp_loss` and
:func:`crown_ibp_loss` are the certified-training losses.
"""

from .bounds import METHODS, MarginBounds, input_box, margin_bounds, margin_spec
from .convert import SUPPORTED
from .graph import BoundGraph, build_graph
from .intermediate import INTERMEDIATE_METHODS
from .losses import CertifiedLoss, certified_loss, crown_ibp_loss, ibp_loss
from .tracing import trace
from .verify import (
    Verdict, VerificationResult, VerifySettings, find_counterexamples, verify, verify_batch, verify_eps_list,
)

__all__ = [
    "METHODS", "INTERMEDIATE_METHODS", "SUPPORTED", "MarginBounds", "input_box", "margin_bounds", "margin_spec",
    "BoundGraph", "build_graph", "trace", "CertifiedLoss", "certified_loss", "crown_ibp_loss", "ibp_loss",
    "Verdict", "VerificationResult", "VerifySettings", "find_counterexamples", "verify", "verify_batch",
    "verify_eps_list",
]
