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

DATA_HELP = f"Dataset: FORMAT or FORMAT:PATH with FORMAT one of {FORMATS.choices()} (digits is built in)."

DataOpt = typer.Option("digits", "--data", help=DATA_HELP)
EvalDataOpt = typer.Option(None, "--data", help="Dataset to evaluate on (default: the model's training data).")
DeviceOpt = typer.Option(DeviceChoice("auto"), "--device", help="auto (CUDA when present), cpu or cuda.")
RunsDirOpt = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Folder holding run folders.")
ModelRunOpt = typer.Option(None, "--model", help="Run folder to use (default: the newest under --runs-dir).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
QueriesOpt = typer.Option(None, "--queries", help="Square's queries per sample (square and auto; default 1000).")
SeedOpt = typer.Option(0, "--seed", help="Random seed (shuffling, initialisation, random starts, subsets).")
PrecisionOpt = typer.Option(
    PrecisionChoice("auto"), "--precision",
    help="Precision of attack gradients and training steps: auto (bf16 where the hardware has it natively, "
         "else fp32), fp32, bf16 or fp16 (CUDA, attacks only). Reported accuracies are always classified in fp32.")
