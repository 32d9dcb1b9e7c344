"""Training runs as the library offers them: train, robust-train and resume, each saved as a run folder."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

from ..data.dataset import Dataset
from ..data.spec import load_dataset
from ..errors import OutputError
from ..io.layout import DEFAULT_RUNS_DIR, LOSS_PLOT_FILE
from ..io.provenance import package_versions, utc_now
from ..io.resume import resume_files
from ..io.runs import check_run_dir_free, default_run_name, save_run
from .checkpoint import check_resume_fits, load_resume
from .config import TrainConfig
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
    return meta


def save_training(result: TrainResult, path: Path) -> Path:
    """Save a trained model as a run folder (weights, model.json, history.csv, loss.png and,
    for an interrupted run, its resume state)."""
    from ..io.plots import save_loss_curve

    title = f"Training loss ({result.config.method}, {result.config.arch}, {result.dataset.name})"
    meta = run_metadata(result)
    writers: list[Callable[[Path], None]] = [
        lambda folder: save_loss_curve(result.history, folder / LOSS_PLOT_FILE, title=title)]
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
    **overrides: Any,
) -> tuple[Path, TrainResult]:
    """Train and save a run folder; returns its path and the result.

    ``advcli.train(epochs=5)`` trains the reference network on the built-in digits;
    ``advcli.train(method="fgsm-rs", eps=0.1)`` does FGSM adversarial training;
    ``advcli.train(arch="mnist-small")`` another architecture. Settings are the flat names of
    :class:`TrainConfig` (``model=`` is the deprecated name of ``arch=``).
    """
    config = (config or TrainConfig()).with_flat(**renamed_settings(overrides))
    config.validate()
    kind = "standard" if config.method == "none" else "robust"
    path = Path(out) if out is not None else Path(runs_dir) / default_run_name(kind)
    check_run_dir_free(path, param="out" if out is not None else "runs_dir")
    result = train_model(config, dataset=dataset, on_progress=on_progress, should_stop=should_stop)
    return save_training(result, path), result


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
) -> tuple[Path, TrainResult]:
    """Continue an interrupted run into a new run folder (default ``<run>-resumed``); the
    interrupted run is left as it is. The result equals that of an uninterrupted run."""
    config, state, meta = load_resume(run)
    path = Path(out) if out is not None else resumed_run_path(run)
    check_run_dir_free(path)
    dataset = dataset if dataset is not None else load_dataset(config.data)
    check_resume_fits(state, config, dataset)
    result = train_model(config, dataset=dataset, on_progress=on_progress, should_stop=should_stop,
                         resume_from=state)
    result.resumed_from = {"run": str(Path(run).absolute()), "iteration": state.info["step"],
                           "weights_sha256": meta["weights"]["sha256"]}
    return save_training(result, path), result
