"""Training runs as the library offers them: train, robust-train and resume, each saved as a run folder."""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from ..data.dataset import Dataset
from ..data.spec import load_dataset, resolve_data_spec
from ..errors import AdvcliError, OutputError
from ..io.layout import DEFAULT_RUNS_DIR, LOSS_PLOT_FILE
from ..io.provenance import package_versions, utc_now
from ..io.resume import ResumeState, resume_files
from ..io.runs import check_run_dir_free, default_run_name, save_run
from ..runtime.coordination import main_decides
from ..runtime.distributed import DistributedContext, from_main
from ..runtime.restarts import allowed_restarts
from .checkpoint import check_resume_fits, load_resume
from .config import TrainConfig
from .continuation import (
    check_continues,
    checkpoint_path,
    drop_checkpoints,
    epoch_writer,
    latest_checkpoint,
    resumed_from,
)
from .loop import train_model
from .monitor import TrainProgress, TrainResult


def renamed_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Overrides with deprecated names replaced (with a DeprecationWarning): ``model`` is now ``arch``."""
    if "model" not in overrides:
        return overrides
    warnings.warn("train(model=...) is deprecated; use arch=", DeprecationWarning, stacklevel=3)
    overrides = dict(overrides)
    overrides.setdefault("arch", overrides.pop("model"))
    return overrides


def run_metadata(result: TrainResult) -> dict[str, Any]:
    """The ``model.json`` description of a trained model."""
    dataset = result.dataset
    adversarial = result.config.method_spec.adversarial
    attacks = adversarial and not result.config.method_spec.certified
    meta = {
        "created": utc_now(),
        "architecture": result.config.arch,
        "input_shape": list(dataset.input_shape),
        "input_range": [0.0, 1.0],
        "classes": list(dataset.classes),
        "training": {
            "method": result.config.method,
            "eps": result.config.adversary.eps if adversarial else 0.0,
            "alpha": result.config.step_size if attacks else None,
            "precision": result.config.precision,
        },
        "config": result.config.flat(),
        "data": dataset.describe(),
        "seed": result.config.seed,
        "versions": package_versions(),
        "metrics": result.metrics,
    }
    if result.guard is not None:
        meta["guard"] = result.guard
    if result.resumed_from is not None:
        meta["resumed_from"] = result.resumed_from
    if result.distributed is not None:
        meta["distributed"] = result.distributed
    return meta


def save_training(result: TrainResult, path: Path, *, plot: bool = True) -> Path:
    """Save a trained model as a run folder (weights, model.json, history.csv, loss.png unless not
    `plot` and, for an interrupted run, its resume state)."""
    from ..io.plots import save_loss_curve

    title = f"Training loss ({result.config.method}, {result.config.arch}, {result.dataset.name})"
    meta = run_metadata(result)
    writers: list[Callable[[Path], None]] = [
        lambda folder: save_loss_curve(result.history, folder / LOSS_PLOT_FILE, title=title)] if plot else []
    if result.resume_state is not None:
        files, meta["resume"] = resume_files(result.resume_state)

        def write_resume_files(folder: Path) -> None:
            for name, content in files.items():
                (folder / name).write_bytes(content)

        writers.append(write_resume_files)
    try:
        return save_run(path, result.model, meta, result.history, extra_writers=writers)
    except OutputError as error:  # a full disk: keep the trained model elsewhere if we can, and say where
        rescued = _save_elsewhere(path, lambda folder: save_run(folder, result.model, meta, result.history,
                                                                extra_writers=writers))
        if rescued is None:
            raise
        raise OutputError(f"{error.message}; the run was saved to {rescued} instead", param=error.param) from None


def _save_elsewhere(path: Path, save: Callable[[Path], Path]) -> Optional[Path]:
    """`save` into a new private folder under the temporary folder ($TMPDIR), for a run that could not be
    saved at `path`; the folder saved, or None when that fails too."""
    try:
        holder = Path(tempfile.mkdtemp(prefix="advcli-unsaved-"))
    except OSError:
        return None
    try:
        return save(holder / path.name)
    except (OutputError, OSError):
        shutil.rmtree(holder, ignore_errors=True)
        return None


def train(
    config: Optional[TrainConfig] = None,
    *,
    out: Optional[Path | str] = None,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    context: Optional[DistributedContext] = None,
    epoch_checkpoints: Optional[bool] = None,
    **overrides: Any,
) -> tuple[Path, TrainResult]:
    """Train and save a run folder; returns its path and the result.

    ``advcli.train(epochs=5)`` trains the reference network on the built-in digits;
    ``advcli.train(method="fgsm-rs", eps=0.1)`` does FGSM adversarial training;
    ``advcli.train(arch="mnist-small")`` another architecture. Settings are the flat names of
    :class:`TrainConfig` (``model=`` is the deprecated name of ``arch=``).

    Under torchrun pass each process's `context`: rank 0 saves the run folder, every rank returns
    once it is saved. With `epoch_checkpoints` (default: on several processes, or when torchrun may
    restart the job) the last epoch's state is kept in ``<out>.checkpoints/``, and a run whose
    folder is not there yet continues from it (:mod:`advcli.training.continuation`); a run stopped
    early then leaves its state there too, and the path returned is that checkpoint's.
    """
    config = (config or TrainConfig()).with_flat(**renamed_settings(overrides))
    config.validate()
    config = config.with_flat(data=resolve_data_spec(config.data))  # found again from any folder
    context = context or DistributedContext()
    kind = "standard" if config.method == "none" else "robust"
    path = _run_path(out, runs_dir, kind, context)
    return _train_into(path, config, None, dataset, on_progress, should_stop, context, epoch_checkpoints,
                       param="out" if out is not None else "runs_dir")


def _run_path(out: Optional[Path | str], runs_dir: Path | str, kind: str, context: DistributedContext) -> Path:
    """`out`, or a new name under `runs_dir` that every rank agrees on (rank 0's clock)."""
    if out is not None:
        return Path(out)
    if allowed_restarts() > 0:
        raise AdvcliError("a job torchrun may restart (--max-restarts) needs `out`: a restarted attempt continues "
                          "from <out>.checkpoints/", param="out")
    return Path(runs_dir) / default_run_name(kind, datetime.fromtimestamp(from_main(int(time.time()), context)))


def _train_into(
    path: Path, config: TrainConfig, resume: Optional[tuple[ResumeState, dict[str, Any]]],
    dataset: Optional[Dataset], on_progress: Optional[Callable[[TrainProgress], None]],
    should_stop: Optional[Callable[[], bool]], context: DistributedContext, epoch_checkpoints: Optional[bool],
    param: str = "out",
) -> tuple[Path, TrainResult]:
    """Train (from `resume`, or from the newest epoch checkpoint of `path` when there is one) and
    save into `path` on rank 0."""
    main_decides(lambda: check_run_dir_free(path, param=param), context)
    state, origin = resume if resume is not None else (None, None)
    iteration = from_main(latest_checkpoint(path), context)  # rank 0 picks; every rank reads that one
    if iteration:
        checkpoint = checkpoint_path(path, iteration)
        saved, state, meta = load_resume(checkpoint)
        check_continues(config, saved, checkpoint)
        config, origin = saved, resumed_from(checkpoint, meta, iteration)
    keep = epoch_checkpoints if epoch_checkpoints is not None else context.distributed or allowed_restarts() > 0
    writer = epoch_writer(path, lambda snapshot, target: save_training(snapshot, target, plot=False)) if keep else None
    result = train_model(config, dataset=dataset, on_progress=on_progress, should_stop=should_stop, resume_from=state,
                         context=context, on_epoch_end=writer)
    result.resumed_from = origin
    if result.interrupted and writer is not None:  # kept where the same command started again finds it
        main_decides(lambda: writer(result), context)
        return checkpoint_path(path, result.metrics["iterations"]), result

    def save() -> None:
        save_training(result, path)
        drop_checkpoints(path)

    main_decides(save, context)
    return path, result


def robust_train(config: Optional[TrainConfig] = None, **kwargs: Any) -> tuple[Path, TrainResult]:
    """:func:`train` with FGSM-RS adversarial training at eps 0.1 unless told otherwise."""
    if config is None:
        kwargs.setdefault("method", "fgsm-rs")
        kwargs.setdefault("eps", 0.1)
    return train(config, **kwargs)


def resumed_run_path(run: Path | str) -> Path:
    """Where a resumed run goes by default: ``<run>-resumed`` beside the interrupted one."""
    run = Path(run).resolve()
    return run.with_name(run.name + "-resumed")


def resume_training(
    run: Path | str,
    *,
    out: Optional[Path | str] = None,
    dataset: Optional[Dataset] = None,
    on_progress: Optional[Callable[[TrainProgress], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    context: Optional[DistributedContext] = None,
    epoch_checkpoints: Optional[bool] = None,
) -> tuple[Path, TrainResult]:
    """Continue an interrupted run into a new run folder (default ``<run>-resumed``); the
    interrupted run is left as it is. The result equals that of an uninterrupted run (on another
    number of processes too, for a run whose draws are keyed: every run on several processes)."""
    config, state, meta = load_resume(run)
    path = Path(out) if out is not None else resumed_run_path(run)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    check_resume_fits(state, config, dataset)
    origin = {"run": str(Path(run).absolute()), "iteration": state.info["step"],
              "weights_sha256": meta["weights"]["sha256"]}
    return _train_into(path, config, (state, origin), dataset, on_progress, should_stop,
                       context or DistributedContext(), epoch_checkpoints)
