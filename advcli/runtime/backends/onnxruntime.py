"""``onnxruntime``: an exported ONNX file, run by onnxruntime.

The file is known by its outputs only: it gives clean predictions, re-classifies every adversarial
example and answers black-box queries. White-box attacks are crafted on a torch checkpoint (the
file's source run, or another) and judged by the file: transfer attacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ...errors import AdvcliError, CheckpointError
from ...io.layout import META_FILE
from ...io.provenance import file_sha256
from ...io.runs import Run, load_run, read_run_meta
from ..classifier import Classifier
from ..device import DEVICES
from . import BACKENDS, Backend

ONNX_FILE = "model.onnx"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

# Execution providers asked for, in order of preference; the first is the one `device` promises.
ORT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "auto": (CUDA_PROVIDER, CPU_PROVIDER),
    "cuda": (CUDA_PROVIDER, CPU_PROVIDER),
    "cpu": (CPU_PROVIDER,),
}


def ort_errors() -> tuple[type[BaseException], ...]:
    """The exceptions onnxruntime raises for bad files, bad inputs and failed providers."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel",
             "NotImplemented", "RuntimeException", "EPFail")
    return tuple(getattr(state, name) for name in names if hasattr(state, name))


def ort_message(error: BaseException) -> str:
    """onnxruntime's message without its status prefix, on one line."""
    text = " ".join(str(error).split())
    return text.split("failed:", 1)[1].strip() if "failed:" in text else text


def _cuda_provider_problem(ort: Any) -> Optional[str]:
    """Why onnxruntime cannot even try its CUDA provider here, or None when it is installed."""
    if CUDA_PROVIDER not in ort.get_available_providers():
        return f"this onnxruntime build ({ort.__version__}) has no {CUDA_PROVIDER}; install onnxruntime-gpu"
    return None


def _current_gpu() -> int:
    """The index of torch's current CUDA device, once torch has set one up (else 0)."""
    return torch.cuda.current_device() if torch.cuda.is_initialized() else 0


def create_session(path: Path | str, device: str = "auto") -> tuple[Any, list[str]]:
    """An onnxruntime session for `path` on the provider `device` asks for, and notes on any fallback.

    ``cuda`` fails with the reason when onnxruntime's CUDA provider did not load; ``auto`` falls back
    to the CPU and says so. What ran is read back from the session, never assumed.
    """
    DEVICES.check(device)
    import onnxruntime as ort

    # A CUDA provider that fails to load logs an error of its own; we report it ourselves below.
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    wanted = ORT_PROVIDERS[device]
    problem = _cuda_provider_problem(ort) if CUDA_PROVIDER in wanted else None
    if problem is not None and device == "cuda":
        raise AdvcliError(f"`device` cuda is not usable by onnxruntime: {problem}", param="device")
    providers: list[Any] = [name for name in wanted if name != CUDA_PROVIDER or problem is None]
    gpu = _current_gpu()
    if gpu:  # a torchrun worker's own GPU (its process group made it the current one)
        providers = [(name, {"device_id": gpu}) if name == CUDA_PROVIDER else name for name in providers]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except ort_errors() as error:
        raise CheckpointError(f"{path}: not a usable ONNX model ({ort_message(error)})") from None
    ran = session.get_providers()
    if wanted[0] not in ran and problem is None:
        from onnxruntime.capi import build_and_package_info

        cuda = getattr(build_and_package_info, "cuda_version", "?")
        problem = (f"onnxruntime's {wanted[0]} failed to load (it needs an NVIDIA GPU with its driver, "
                   f"and CUDA {cuda} and cuDNN libraries for onnxruntime {ort.__version__})")
        if device == "cuda":
            raise AdvcliError(f"`device` cuda is not usable by onnxruntime: {problem}", param="device")
    if problem is None:
        return session, []
    return session, [f"device auto: {problem}; running on {', '.join(ran)}"]


def _metadata_json(path: Path, metadata: dict[str, str], key: str) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: malformed metadata {key!r}") from None


def load_onnx_classifier(path: Path, device: str = "auto") -> Classifier:
    """An exported ONNX file under onnxruntime. advcli's metadata supplies classes and data, when present."""
    path = Path(path)
    if path.is_dir():
        if not (path / ONNX_FILE).is_file():
            raise CheckpointError(f"{path} is a folder without {ONNX_FILE}; pass the .onnx file as `model`", param="model")
        path = path / ONNX_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    session, notes = create_session(path, device)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type != "tensor(float)":
        described = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        raise CheckpointError(f"{path}: expected one float image input (N, C, H, W), found {described}")
    if not outputs or len(outputs[0].shape) != 2:
        raise CheckpointError(f"{path}: expected logits (N, classes) as first output")
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    classes = _metadata_json(path, metadata, "advcli.classes")
    input_shape = _metadata_json(path, metadata, "advcli.input_shape")
    if input_shape is None:
        input_shape = [dim if isinstance(dim, int) else None for dim in inputs[0].shape[1:]]
        input_shape = input_shape if None not in input_shape else None
    input_name, output_name = inputs[0].name, outputs[0].name
    errors = ort_errors()

    def logits(x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        try:
            (out,) = session.run([output_name], {input_name: batch})
        except errors as error:
            raise AdvcliError(f"{path}: onnxruntime failed on inputs of shape {batch.shape} ({ort_message(error)})") from None
        return torch.from_numpy(out).to(x.device)

    return Classifier(
        path=path, backend="onnxruntime", fingerprint=file_sha256(path), logits=logits, device=torch.device("cpu"),
        classes=list(classes) if classes is not None else None,
        input_shape=tuple(input_shape) if input_shape is not None else None,
        data_spec=metadata.get("advcli.data"), execution_providers=list(session.get_providers()),
        metadata=metadata, notes=notes,
    )


def load_transfer_source(classifier: Classifier, source: Optional[str | Path], device: torch.device) -> Run:
    """The torch checkpoint that crafts white-box examples against an ONNX model.

    `source` when given (any surrogate model); otherwise the run named in the file's metadata,
    found where it was exported from or as the folder holding the file, and only if its weights
    are exactly those that were exported.
    """
    if source is not None:
        return load_run(source, device=device)
    named = classifier.metadata.get("advcli.source_run")
    fingerprint = classifier.metadata.get("advcli.source_fingerprint")
    if not named or not fingerprint:
        raise AdvcliError(f"{classifier.path} names no source checkpoint; pass a run as `source` for transfer "
                          "attacks, or use only black-box attacks (square)", param="source")
    for candidate in dict.fromkeys((Path(named), classifier.path.parent)):
        if not (candidate / META_FILE).is_file():
            continue
        try:
            meta = read_run_meta(candidate)
        except CheckpointError:
            continue
        if meta["weights"].get("sha256") == fingerprint:
            return load_run(candidate, device=device)
    raise AdvcliError(f"source checkpoint {named} of {classifier.path} was not found with weights {fingerprint[:19]}…; "
                      "pass a run as `source`, or use only black-box attacks (square)", param="source")


BACKENDS.register("onnxruntime", Backend(load_onnx_classifier, suffixes=(".onnx",)))
