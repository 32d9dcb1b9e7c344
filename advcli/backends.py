"""Backends that run a model for evaluation: torch on a run folder, onnxruntime on an exported file.

Either way the result is a :class:`Classifier`: a function from pixel-space inputs to logits plus
what it is (file, fingerprint, classes, the execution provider that actually runs it). Only the torch
backend exposes weights for white-box attacks; an ONNX file is attacked by transfer from its source
checkpoint or through its outputs alone (black-box attacks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from .devices import DEVICE_CHOICES, auto_fallback_note, resolve_device
from .errors import AdvcliError, CheckpointError
from .provenance import file_sha256
from .runs import DEFAULT_RUNS_DIR, META_FILE, Run, load_run, read_run_meta, resolve_run_path
from .square import LogitsFn, torch_logits

ONNX_FILE = "model.onnx"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

# Execution providers asked for, in order of preference; the first is the one `--device` promises.
ORT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "auto": (CUDA_PROVIDER, CPU_PROVIDER),
    "cuda": (CUDA_PROVIDER, CPU_PROVIDER),
    "cpu": (CPU_PROVIDER,),
}


@dataclass
class Classifier:
    """A model under evaluation, whatever runs it. Calling it maps inputs to logits (on the inputs' device)."""

    path: Path
    backend: str
    fingerprint: str
    logits: LogitsFn
    device: torch.device
    classes: Optional[list[str]] = None
    input_shape: Optional[tuple[int, ...]] = None
    data_spec: Optional[str] = None
    model: Optional[nn.Module] = None  # torch weights for white-box attacks; None when only outputs exist
    execution_providers: Optional[list[str]] = None  # as read back from onnxruntime
    metadata: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    def as_module(self) -> nn.Module:
        """The model as a torch module: its own weights, or (outputs only) a module without gradients."""
        return self.model if self.model is not None else OutputsOnly(self.logits)


class OutputsOnly(nn.Module):
    """A model known only by its outputs (e.g. an onnxruntime session) as a torch module.

    It has no parameters and gives no gradients: it serves clean predictions, re-classification
    and black-box attacks; white-box attacks need torch weights.
    """

    def __init__(self, logits: LogitsFn) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x.detach()).float()


def torch_classifier(run: Run, notes: Optional[list[str]] = None) -> Classifier:
    """A loaded run as a classifier (its model also serves white-box attacks)."""
    return Classifier(
        path=run.path, backend="torch", fingerprint=run.fingerprint, logits=torch_logits(run.model),
        device=next(run.model.parameters()).device, classes=run.classes,
        input_shape=tuple(run.meta["input_shape"]), data_spec=run.data_spec, model=run.model, notes=notes or [],
    )


def load_torch_classifier(path: Path, device: str = "auto") -> Classifier:
    note = auto_fallback_note(device)
    return torch_classifier(load_run(path, device=resolve_device(device)), notes=[note] if note else [])


# onnxruntime ------------------------------------------------------------------------------------


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


def create_session(path: Path | str, device: str = "auto") -> tuple[Any, list[str]]:
    """An onnxruntime session for `path` on the provider `device` asks for, and notes on any fallback.

    ``cuda`` fails with the reason when onnxruntime's CUDA provider did not load; ``auto`` falls back
    to the CPU and says so. What ran is read back from the session, never assumed.
    """
    if device not in DEVICE_CHOICES:
        raise AdvcliError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    import onnxruntime as ort

    # A CUDA provider that fails to load logs an error of its own; we report it ourselves below.
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    wanted = ORT_PROVIDERS[device]
    problem = _cuda_provider_problem(ort) if CUDA_PROVIDER in wanted else None
    if problem is not None and device == "cuda":
        raise AdvcliError(f"--device cuda is not usable by onnxruntime: {problem}")
    providers = [name for name in wanted if name != CUDA_PROVIDER or problem is None]
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
            raise AdvcliError(f"--device cuda is not usable by onnxruntime: {problem}")
    if problem is None:
        return session, []
    return session, [f"--device auto: {problem}; running on {', '.join(ran)}"]


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
            raise CheckpointError(f"{path} is a folder without {ONNX_FILE}; pass --model FILE.onnx")
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


# Choosing a backend -----------------------------------------------------------------------------

BACKENDS: dict[str, Callable[[Path, str], Classifier]] = {
    "torch": load_torch_classifier,
    "onnxruntime": load_onnx_classifier,
}

BackendName = Enum("BackendName", {name: name for name in BACKENDS}, type=str)  # type: ignore[misc]

_SUFFIX_BACKENDS = {".onnx": "onnxruntime", ".json": "torch", ".safetensors": "torch"}
_ONNX_FIRST_BYTE = b"\x08"  # an ONNX ModelProto opens with its ir_version field (1, varint)


def detect_backend(path: Path) -> str:
    """The backend a model path calls for: run folders are torch, ONNX files onnxruntime."""
    path = Path(path)
    if path.is_dir() or not path.exists():
        return "torch"
    if path.suffix.lower() in _SUFFIX_BACKENDS:
        return _SUFFIX_BACKENDS[path.suffix.lower()]
    with open(path, "rb") as handle:
        if handle.read(1) == _ONNX_FIRST_BYTE:
            return "onnxruntime"
    raise CheckpointError(f"{path}: neither a run folder nor an ONNX file; pass --backend to say which")


def load_classifier(
    model: Optional[str | Path],
    *,
    backend: Optional[str] = None,
    device: str = "auto",
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
) -> tuple[Classifier, bool]:
    """The model to evaluate (the newest run by default) and whether it was picked automatically."""
    path, automatic = resolve_run_path(model, runs_dir)
    name = backend or detect_backend(path)
    if name not in BACKENDS:
        raise AdvcliError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return BACKENDS[name](path, device), automatic


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
        raise AdvcliError(f"{classifier.path} names no source checkpoint; pass --source RUN for transfer "
                          "attacks, or use only black-box attacks (--attack square)")
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
                      "pass --source RUN, or use only black-box attacks (--attack square)")
