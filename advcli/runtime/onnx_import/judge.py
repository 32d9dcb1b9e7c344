"""onnxruntime on the file itself, called on advcli's pixel batches: the judge of every counted prediction.

The white-box path crafts with the converted torch module, but whether an image is classified
correctly is always decided here, by the file under onnxruntime (its CPU provider unless the caller
names others, as :mod:`advcli.runtime.backends.onnxruntime` does for ``device``).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from ...errors import AdvcliError
from .contract import GRID, InputContract, PixelToFile
from .errors import ConversionError
from .loading import ModelSource, read_model

CPU_PROVIDER = "CPUExecutionProvider"
PROBABILITY_FLOOR = 1e-30  # log of a probability that underflowed to 0 stays finite


def ort_session(source: ModelSource, extra_outputs: Sequence[str] = (),
                providers: Sequence[str] = (CPU_PROVIDER,)) -> Any:
    """An onnxruntime session on `source` (on `providers`), with intermediate values `extra_outputs`
    added as outputs."""
    import onnx
    import onnxruntime as ort

    proto = read_model(source)
    known = {value.name for value in proto.graph.output}
    for name in extra_outputs:
        if name not in known:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(proto.SerializeToString(), sess_options=options, providers=list(providers))
    except Exception as error:  # onnxruntime's own exception types (Fail, InvalidGraph...) share no base
        raise ConversionError(f"onnxruntime cannot load the file: {' '.join(str(error).split())[:200]}") from None


class OnnxJudge:
    """The file under onnxruntime as a function of pixel batches.

    ``judge(x)`` returns logit-like scores on `x`'s device: the outputs, or their logarithm when they
    are probabilities (`log_outputs`; log-probabilities differ from logits by a per-sample constant,
    so margins and argmax are those of the logits). A uint8 input gets the pixels rounded to k/255.
    """

    def __init__(self, source: ModelSource, contract: InputContract, *, log_outputs: bool = False,
                 fixed_batch: Optional[int] = None, extra_outputs: Sequence[str] = (),
                 providers: Sequence[str] = (CPU_PROVIDER,)) -> None:
        self.session = ort_session(source, extra_outputs, providers)
        inputs = self.session.get_inputs()
        declared = inputs[0].shape[0] if inputs[0].shape else None
        fixed_batch = fixed_batch or (declared if isinstance(declared, int) and declared > 0 else None)
        self.input_name = inputs[0].name
        self.output_names = [out.name for out in self.session.get_outputs()]
        self.integer_input = inputs[0].type == "tensor(uint8)"
        self.providers = list(self.session.get_providers())
        self.contract = contract
        self.log_outputs = log_outputs
        self.fixed_batch = fixed_batch
        self._to_file: Optional[PixelToFile] = None

    def _file_input(self, x: torch.Tensor) -> np.ndarray:
        if self._to_file is None:
            self._to_file = PixelToFile(self.contract, x.shape[1])
        with torch.no_grad():
            value = self._to_file.to(x.device)(x.detach().float())
        array = value.cpu().numpy()
        if self.integer_input:
            return np.clip(np.rint(array * (GRID / self.contract.top)), 0, GRID).astype(np.uint8)
        return np.ascontiguousarray(array, dtype=np.float32)

    def run(self, x: torch.Tensor, names: Optional[Sequence[str]] = None) -> list[np.ndarray]:
        """The named outputs (default: the first) on pixel batch `x`, as float32 arrays."""
        names = list(names or self.output_names[:1])
        batch = self._file_input(x)
        step = self.fixed_batch or max(len(batch), 1)
        parts: list[list[np.ndarray]] = []
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            short = step - len(chunk) if self.fixed_batch else 0
            if short:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
            try:
                outs = self.session.run(names, {self.input_name: chunk})
            except Exception as error:  # onnxruntime's exception types share no base of their own
                message = " ".join(str(error).split())
                message = message.split("failed:", 1)[1].strip() if "failed:" in message else message
                raise AdvcliError(f"onnxruntime failed on inputs of shape {tuple(chunk.shape)}: {message[:300]}") from None
            parts.append([np.asarray(out, dtype=np.float32)[:len(chunk) - short] for out in outs])
        if not parts:
            return [np.zeros((0,), dtype=np.float32) for _ in names]
        return [np.concatenate([part[i] for part in parts]) for i in range(len(names))]

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(x)[0]).to(x.device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.outputs(x)
        return out.clamp_min(PROBABILITY_FLOOR).log() if self.log_outputs else out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.outputs(x).argmax(1)
