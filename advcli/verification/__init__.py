"""Formal L-inf robustness verification by bound propagation (IBP, CROWN, alpha-CROWN).

A model (any torch module of supported layers, or a torch.fx GraphModule of them) becomes a
:class:`BoundGraph`; :func:`margin_bounds` bounds its margins ``z_y - z_j`` over the ball of
radius eps around each input within [0, 1] by a registered bound method (:data:`BOUND_METHODS`,
one file per method in ``methods/``); :func:`verify_radii` turns those bounds and advcli's attacks
into per-sample verdicts (verified, violated, unproven); :func:`verify` and :func:`verify_model`
make the report ``advcli verify`` prints, for run folders and for ONNX files through their
conversion to torch (:mod:`.onnx_files`); :func:`ibp_loss` and :func:`crown_ibp_loss` are the
certified-training losses.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "BOUND_METHODS": ".methods",
    "BoundMethod": ".methods",
    "INTERMEDIATE_METHODS": ".methods",
    "MarginBounds": ".bounds",
    "input_box": ".bounds",
    "margin_bounds": ".bounds",
    "margin_spec": ".bounds",
    "SUPPORTED": ".convert",
    "BoundGraph": ".graph",
    "build_graph": ".graph",
    "trace": ".tracing",
    "CertifiedLoss": ".losses",
    "certified_loss": ".losses",
    "crown_ibp_loss": ".losses",
    "ibp_loss": ".losses",
    "Verdict": ".verdicts",
    "VerificationResult": ".verdicts",
    "verify_radii": ".verdicts",
    "verify_batch": ".verdicts",
    "VerifyConfig": ".config",
    "DEFAULT_ATTACKS": ".config",
    "VerifyReport": ".report",
    "verify": ".api",
    "verify_model": ".api",
    "load_verifiable": ".api",
    "save_certified_plot": ".api",
    "Verifiable": ".onnx_files",
    "verifiable": ".onnx_files",
})

__all__ = ["BOUND_METHODS", "BoundMethod", "INTERMEDIATE_METHODS", "MarginBounds", "input_box", "margin_bounds",
           "margin_spec", "SUPPORTED", "BoundGraph", "build_graph", "trace", "CertifiedLoss", "certified_loss",
           "crown_ibp_loss", "ibp_loss", "Verdict", "VerificationResult", "verify_radii", "verify_batch",
           "VerifyConfig", "DEFAULT_ATTACKS", "VerifyReport", "verify", "verify_model", "load_verifiable",
           "save_certified_plot", "Verifiable", "verifiable"]
