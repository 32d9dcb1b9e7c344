"""Options shared by the commands; every choice list comes from a registry, read without torch."""

from __future__ import annotations

from enum import Enum

import typer

from ..attacks.methods import ATTACKS
from ..data.formats import FORMATS
from ..io.layout import DEFAULT_RUNS_DIR
from ..models.architectures import MODELS
from ..registry import Registry
from ..runtime.backends import BACKENDS
from ..runtime.device import DEVICES
from ..runtime.onnx_import.vocabulary import CHANNEL_ORDERS, INPUT_RANGES, LAYOUTS, OUTPUT_KINDS
from ..runtime.precision import PRECISIONS
from ..threat import NORMS
from ..training.collapse import ON_COLLAPSE
from ..training.methods import METHODS
from ..training.optimizers import LR_SCHEDULES, OPTIMIZERS
from ..verification.methods import BOUND_METHODS, INTERMEDIATE_METHODS


def choices(name: str, registry: Registry) -> type[Enum]:
    """The registry's names as the Enum Typer shows and checks as a choice."""
    return Enum(name, {entry: entry for entry in registry.names()}, type=str)  # type: ignore[return-value]


AttackName = choices("AttackName", ATTACKS)
NormName = choices("NormName", NORMS)
BackendName = choices("BackendName", BACKENDS)
DeviceChoice = choices("DeviceChoice", DEVICES)
PrecisionChoice = choices("PrecisionChoice", PRECISIONS)
ModelName = choices("ModelName", MODELS)
MethodName = choices("MethodName", METHODS)
OptimizerName = choices("OptimizerName", OPTIMIZERS)
LrScheduleName = choices("LrScheduleName", LR_SCHEDULES)
OnCollapseName = choices("OnCollapseName", ON_COLLAPSE)
BoundMethodName = choices("BoundMethodName", BOUND_METHODS)
IntermediateName = choices("IntermediateName", INTERMEDIATE_METHODS)
LayoutChoice = choices("LayoutChoice", LAYOUTS)
OutputsChoice = choices("OutputsChoice", OUTPUT_KINDS)
ChannelOrderChoice = choices("ChannelOrderChoice", CHANNEL_ORDERS)
InputRangeChoice = choices("InputRangeChoice", INPUT_RANGES)

DATA_HELP = f"Dataset: FORMAT or FORMAT:PATH with FORMAT one of {FORMATS.choices()} (digits is built in)."

DataOpt = typer.Option("digits", "--data", help=DATA_HELP)
EvalDataOpt = typer.Option(None, "--data", help="Dataset to evaluate on (default: the model's training data).")
DeviceOpt = typer.Option(DeviceChoice("auto"), "--device", help="auto (CUDA when present), cpu or cuda.")
RunsDirOpt = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Folder holding run folders.")
ModelRunOpt = typer.Option(None, "--model", help="Run folder to use (default: the newest under --runs-dir).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress on stderr (errors, warnings and results still show).")
QueriesOpt = typer.Option(None, "--queries", help="Square's queries per sample (square and auto: default 1000; autoattack: 5000).")
SeedOpt = typer.Option(0, "--seed", help="Random seed (shuffling, initialisation, random starts, subsets).")
SplitOpt = typer.Option("test", "--split", help="train or test.")
AttackBatchSizeOpt = typer.Option(500, "--batch-size", min=1, help="Samples attacked (or bounded) at once.")
PrecisionOpt = typer.Option(
    PrecisionChoice("auto"), "--precision",
    help="Precision of attack gradients and training steps: auto (bf16 where the hardware has it natively, "
         "else fp32), fp32, bf16 or fp16 (CUDA, attacks only). Reported accuracies are always classified in fp32.")

# What a foreign model (an ONNX file, a trusted TorchScript or torch.export file) takes and gives.
InputRangeOpt = typer.Option(InputRangeChoice("0,1"), "--input-range",
                             help="Pixel range the model takes: 0,1 or 0,255 (eps stays in [0, 1] pixel units).")
MeanOpt = typer.Option(None, "--mean", help="Per-channel mean subtracted before the model, in --input-range units, "
                                            "comma-separated (e.g. 0.485,0.456,0.406 for 0,1).")
StdOpt = typer.Option(None, "--std", help="Per-channel std the model's input is divided by (with --mean).")
LayoutOpt = typer.Option(LayoutChoice("nchw"), "--layout", help="nchw or nhwc (TensorFlow and Keras exports).")
OutputsOpt = typer.Option(OutputsChoice("auto"), "--outputs",
                          help="logits, probabilities, or auto (a trailing Softmax is cut; probability rows are "
                               "attacked through their logarithm).")
ChannelOrderOpt = typer.Option(ChannelOrderChoice("rgb"), "--channel-order", help="rgb or bgr (OpenCV, Caffe).")
ClassNamesOpt = typer.Option(None, "--class-names",
                             help="Class names for the report: comma-separated, or a text file with one per line.")
ConvertOpt = typer.Option(True, "--convert/--no-convert",
                          help="Attack an ONNX file white-box through its conversion to torch when that reproduces "
                               "onnxruntime (--no-convert: transfer from --source, else Square only).")
TrustPickledOpt = typer.Option(False, "--trust-pickled-model",
                               help="Load TorchScript (.pt/.pth/.jit) and torch.export (.pt2) files, which RUN CODE "
                                    "from the file when loaded; refused without it (export to ONNX instead).")
BackendOpt = typer.Option(None, "--backend", help=f"{BACKENDS.choices()} (default: follows from --model).")
SourceOpt = typer.Option(None, "--source", help="Run that crafts white-box attacks when the model cannot be "
                                                 "differentiated (transfer; default for an advcli ONNX file whose "
                                                 "conversion fails: the checkpoint named in the file).")


def contract_settings(input_range: Enum, mean: str | None, std: str | None, layout: Enum, outputs: Enum,
                      channel_order: Enum, class_names: object) -> dict[str, object]:
    """The input contract options as the flat settings a config takes."""
    return {"input_range": input_range.value, "mean": mean, "std": std, "layout": layout.value,
            "outputs": outputs.value, "channel_order": channel_order.value, "class_names": class_names}
