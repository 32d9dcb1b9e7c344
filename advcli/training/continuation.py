"""The last epoch's resume state, kept beside a run folder while the run trains, so that the same
command started again continues from it: a torchrun restart (``--max-restarts``) after a process
died, or a rerun by hand after the whole job did, on any number of processes.

``<out>.checkpoints/iteration-<N>/`` is a complete interrupted run folder (weights as they were at
that epoch's end, model.json, history, resume state), written atomically by rank 0 at every epoch's
end; the older one goes once the newer is complete. The run's own folder ``<out>`` appears at the
end, and the checkpoints go with it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable, Optional

from ..errors import CheckpointError
from ..io.layout import META_FILE
from .config import TrainConfig
from .monitor import TrainResult

CHECKPOINTS_SUFFIX = ".checkpoints"
_ENTRY = re.compile(r"iteration-(\d{9})")
# Settings that may differ between the attempts of one run: where it runs, and keyed draws, which
# several processes switch on by themselves.
_MAY_DIFFER = ("device", "keyed_noise")


def checkpoints_folder(run: Path) -> Path:
    """Where the epoch checkpoints of the run folder `run` are kept."""
    return run.with_name(run.name + CHECKPOINTS_SUFFIX)


def checkpoint_path(run: Path, iteration: int) -> Path:
    return checkpoints_folder(run) / f"iteration-{iteration:09d}"


def latest_checkpoint(run: Path) -> int:
    """The iteration of the newest complete epoch checkpoint of `run` (0: none)."""
    folder = checkpoints_folder(run)
    if not folder.is_dir():
        return 0
    iterations = [int(match.group(1)) for entry in folder.iterdir()
                  if (match := _ENTRY.fullmatch(entry.name)) and (entry / META_FILE).is_file()]
    return max(iterations, default=0)


def epoch_writer(run: Path, save: Callable[[TrainResult, Path], Any]) -> Callable[[TrainResult], None]:
    """The `on_epoch_end` of a run saved to `run`: write the checkpoint with `save`, then drop older ones."""

    def write(result: TrainResult) -> None:
        target = checkpoint_path(run, int(result.metrics["iterations"]))
        if target.exists():  # written by an earlier attempt that got this far
            shutil.rmtree(target)
        save(result, target)
        for entry in checkpoints_folder(run).iterdir():
            if entry != target and _ENTRY.fullmatch(entry.name):
                shutil.rmtree(entry, ignore_errors=True)

    return write


def drop_checkpoints(run: Path) -> None:
    """Remove the checkpoints of `run`, once its own folder is saved."""
    shutil.rmtree(checkpoints_folder(run), ignore_errors=True)


def check_continues(requested: TrainConfig, saved: TrainConfig, checkpoint: Path) -> None:
    """Refuse to continue a checkpoint written with other settings than those now asked for."""
    asked, kept = requested.resolved().flat(), saved.flat()
    ignored = set(_MAY_DIFFER) | ({"precision"} if requested.precision == "auto" else set())
    differing = [name for name in asked if name not in ignored and asked[name] != kept.get(name)]
    if differing:
        name = differing[0]
        raise CheckpointError(f"{checkpoint} holds a run with other settings ({name} {kept.get(name)!r} there, "
                              f"{asked[name]!r} now); remove {checkpoint.parent} to start afresh, or choose another "
                              "`out`", param="out")


def resumed_from(checkpoint: Path, meta: dict[str, Any], iteration: int) -> Optional[dict[str, Any]]:
    """The ``resumed_from`` entry of a run continued from `checkpoint`."""
    if not meta.get("weights"):
        raise CheckpointError(f"{checkpoint}: not a complete checkpoint")
    return {"run": str(checkpoint), "iteration": iteration, "weights_sha256": meta["weights"]["sha256"],
            "epoch_checkpoint": True}
