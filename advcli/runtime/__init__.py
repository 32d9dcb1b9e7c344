"""Where and how models run: devices, precision, frozen crafting copies, the model under attack
(:class:`Victim`), the backends that load a model for evaluation (torch runs, ONNX files, trusted
TorchScript and torch.export programs), users' own modules behind their input contract, and the
ONNX-to-torch conversion that lets any ONNX file be attacked white-box (:mod:`.onnx_import`)."""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "DEVICES": ".device",
    "resolve_device": ".device",
    "auto_fallback_note": ".device",
    "cuda_unavailable_reason": ".device",
    "keep_freed_memory": ".memory",
    "PRECISIONS": ".precision",
    "resolve_precision": ".precision",
    "cpu_has_native_bf16": ".precision",
    "Autocast": ".autocast",
    "crafting_model": ".autocast",
    "deciding_model": ".autocast",
    "reference_model": ".autocast",
    "set_channels_last": ".autocast",
    "attack_mode": ".execution",
    "predict": ".execution",
    "by_chunks": ".execution",
    "Classifier": ".classifier",
    "OutputsOnly": ".classifier",
    "torch_logits": ".classifier",
    "Victim": ".victim",
    "BACKENDS": ".backends",
    "LoadRequest": ".backends",
    "load_classifier": ".loading",
    "detect_backend": ".loading",
    "module_classifier": ".user_module",
})

__all__ = ["DEVICES", "resolve_device", "auto_fallback_note", "cuda_unavailable_reason", "keep_freed_memory",
           "PRECISIONS", "resolve_precision", "cpu_has_native_bf16", "Autocast", "crafting_model", "deciding_model",
           "reference_model", "set_channels_last", "attack_mode", "predict", "by_chunks", "Classifier",
           "OutputsOnly", "torch_logits", "Victim", "BACKENDS", "LoadRequest", "load_classifier", "detect_backend",
           "module_classifier"]
