"""``onnxruntime``: an exported ONNX file, run by onnxruntime.

onnxruntime on the file gives clean predictions, re-classifies every adversarial example and
answers black-box queries, whatever else happens. White-box attacks are crafted, in this order of
preference, on the file's own conversion to torch when it passes the parity gate
(:mod:`advcli.runtime.onnx_import`), else on a torch checkpoint (`source`, or the run named in
advcli's metadata: transfer attacks); with neither, only black-box attacks run. The file is read
behind an input contract (range, normalisation, layout, outputs) so that attacks stay in advcli's
pixel space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from ...data.limits import DataLimits
from ...errors import AdvcliError, CheckpointError
from ...io.documents import read_onnx_metadata
from ...io.layout import META_FILE
from ...io.provenance import file_sha256
from ...io.runs import Run, load_run, read_run_meta
from ..classifier import Classifier
from ..device import DEVICES
from . import BACKENDS, Backend, LoadRequest

ONNX_FILE = "model.onnx"
IMAGE_TYPES = ("tensor(float)", "tensor(uint8)")
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
            raise AdvcliError(f"`device` cuda is not usable by onnxruntime: {problem}", param="device")
    if problem is None:
        return session, []
    return session, [f"device auto: {problem}; running on {', '.join(ran)}"]


def _check_io(path: Path, session: Any) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].type not in IMAGE_TYPES:
        described = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        raise CheckpointError(f"{path}: expected one float or uint8 image input (NCHW or NHWC), found {described}")
    if not outputs or len(outputs[0].shape) != 2:
        raise CheckpointError(f"{path}: expected logits or probabilities (N, classes) as first output")


def _pixel_shape(session: Any, advcli_metadata: dict[str, Any], contract: Any) -> Optional[tuple[int, ...]]:
    """advcli's (C, H, W) the file takes: its metadata's, else its declared sizes under the contract's layout."""
    input_shape = advcli_metadata.get("advcli.input_shape")
    if input_shape is not None:
        return tuple(input_shape)
    dims = [dim if isinstance(dim, int) else None for dim in session.get_inputs()[0].shape[1:]]
    return None if None in dims else contract.pixel_shape(dims)


def load_onnx_classifier(path: Path, request: LoadRequest | str = LoadRequest()) -> Classifier:
    """An ONNX file under onnxruntime, behind the request's input contract. advcli's metadata supplies
    classes and data, when present; `white_box` of the result converts the file for white-box attacks."""
    from ..onnx_import.errors import ConversionError
    from ..onnx_import.hints import contract_hints
    from ..onnx_import.judge import OnnxJudge
    from ..onnx_import.masking import non_differentiable_ops

    request = LoadRequest(device=request) if isinstance(request, str) else request
    path, contract = Path(path), request.contract
    if path.is_dir():
        if not (path / ONNX_FILE).is_file():
            raise CheckpointError(f"{path} is a folder without {ONNX_FILE}; pass the .onnx file as `model`", param="model")
        path = path / ONNX_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    session, notes = create_session(path, request.device)
    _check_io(path, session)
    integer_input = session.get_inputs()[0].type == "tensor(uint8)"
    declared = session.get_inputs()[0].shape[1:]
    if integer_input and contract.mean is not None:
        raise AdvcliError(f"{path} takes uint8 pixels, which cannot be normalised before it; drop `mean` and `std`",
                          param="mean")
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    advcli_metadata = read_onnx_metadata(metadata, str(path), DataLimits.current())
    classes = contract.class_names or advcli_metadata.get("advcli.classes")
    providers = list(session.get_providers())
    try:
        judge = OnnxJudge(path, contract, log_outputs=contract.outputs == "probabilities", providers=providers)
        counts: dict[str, int] = {}
        for finding in non_differentiable_ops(path):
            counts[finding.op_type] = counts.get(finding.op_type, 0) + 1
        findings = [f"{op_type} ({count})" for op_type, count in counts.items()]
        warnings = contract_hints(path, contract)
    except ConversionError as error:
        raise CheckpointError(f"{path}: {error.message}") from None
    if integer_input:
        notes.append(f"{path.name} takes uint8 images: an integer threat model; images are put on the k/255 grid, "
                     "attacks run at whole grid steps (eps rounded down to a multiple of 1/255) and every "
                     "adversarial example is rounded onto the grid before it is judged")

    def white_box(x: torch.Tensor, device: torch.device) -> Any:
        from ..onnx_import.whitebox import white_box as convert_and_check

        dims = None if all(isinstance(d, int) for d in declared) else _file_dims(contract, x.shape[1:])
        return convert_and_check(path, x, contract=contract, providers=providers, device=device, input_dims=dims)

    return Classifier(
        path=path, backend="onnxruntime", fingerprint=file_sha256(path), logits=judge, device=torch.device("cpu"),
        classes=list(classes) if classes is not None else None,
        input_shape=_pixel_shape(session, advcli_metadata, contract), data_spec=metadata.get("advcli.data"),
        execution_providers=providers, metadata=metadata, notes=notes, contract=contract,
        integer_input=integer_input, non_differentiable=findings, warnings=warnings, white_box=white_box,
    )


def _file_dims(contract: Any, pixel_dims: Any) -> list[int]:
    channels, height, width = (int(d) for d in pixel_dims)
    return [height, width, channels] if contract.layout == "nhwc" else [channels, height, width]


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
    unreadable = ""
    for candidate in dict.fromkeys((Path(named), classifier.path.parent)):
        if not (candidate / META_FILE).is_file():
            continue
        try:
            meta = read_run_meta(candidate)
        except CheckpointError as error:
            unreadable = f" ({candidate} is unreadable: {error.message})"
            continue
        if meta["weights"].get("sha256") == fingerprint:
            return load_run(candidate, device=device)
    raise AdvcliError(f"source checkpoint {named} of {classifier.path} was not found with weights {fingerprint[:19]}…"
                      f"{unreadable}; pass a run as `source`, or use only black-box attacks (square)", param="source")


BACKENDS.register("onnxruntime", Backend(load_onnx_classifier, suffixes=(".onnx",)))
