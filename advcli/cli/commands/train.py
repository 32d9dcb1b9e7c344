"""``advcli train`` and ``advcli robust-train``: a run folder from standard or adversarial training."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from ...errors import AdvcliError, render_references
from ...models.architectures import DEFAULT_MODEL
from ...training.methods import METHODS
from ..escaping import shown
from ..failures import EXIT_INTERRUPTED, flag_names, handles_errors
from ..interrupts import graceful_interrupt
from ..options import (
    DataOpt,
    DeviceChoice,
    DeviceOpt,
    JsonOpt,
    LrScheduleName,
    MethodName,
    ModelName,
    OnCollapseName,
    OptimizerName,
    PrecisionChoice,
    PrecisionOpt,
    QuietOpt,
    RunsDirOpt,
    SeedOpt,
)
from ..processes import TimeoutOpt, joined, launched
from ..progress import progress_view
from ..render import err, print_json, say_notes

if TYPE_CHECKING:
    from ...training.config import TrainConfig
    from ...training.monitor import TrainProgress, TrainResult

METHOD_HELP = f"Training method: {METHODS.choices()} (none: plain training)."
ArchOpt = typer.Option(ModelName(DEFAULT_MODEL), "--arch", help="Architecture.")
DeprecatedModelOpt = typer.Option(None, "--model", hidden=True, help="Deprecated name of --arch.")


def _architecture(arch: "ModelName", model: Optional[str]) -> str:
    """--arch, or the deprecated --model (with a note)."""
    if model is None:
        return arch.value
    err.print("[yellow]note:[/] --model is deprecated for training; use --arch", highlight=False)
    return model


def _reject_options_with_resume(ctx: typer.Context) -> None:
    """--resume continues with the run's saved settings; any training option given with it is an error."""
    allowed = {"resume", "out_dir", "runs_dir", "as_json", "quiet", "timeout", "epoch_checkpoints"}
    given = [param.opts[0] for param in ctx.command.params
             if param.name not in allowed and getattr(ctx.get_parameter_source(param.name), "name", None) == "COMMANDLINE"]
    if given:
        raise AdvcliError(f"--resume continues a run with its saved settings; drop {', '.join(given)}")


def _describe_progress(p: "TrainProgress") -> str:
    parts = [f"epoch {p.epoch}/{p.epochs}" if p.epoch_loss is not None else f"iteration {p.iteration}"]
    if p.epoch_loss is not None:
        parts.append(f"loss {p.epoch_loss:.4f}")
    if p.validation is not None:
        parts.append(f"val clean {p.validation.accuracy:.4f}  val robust {p.validation.robust_accuracy:.4f}")
        if p.validation.certified_accuracy is not None:
            parts.append(f"val certified {p.validation.certified_accuracy:.4f}")
    return "  ".join(parts)


def _report_training(path: Path, result: "TrainResult", command: str, rerun_continues: bool) -> None:
    metrics = result.metrics
    if result.interrupted and path.parent.name.endswith(".checkpoints") and rerun_continues:
        err.print(f"[yellow]stopped early at iteration {metrics['iterations']}; the state is kept in {path}[/] "
                  "(run the same command again to continue)", highlight=False)
    elif result.interrupted:
        err.print(f"[yellow]stopped early at iteration {metrics['iterations']}; the model so far and a resume "
                  f"state were saved[/] (continue with: advcli {command} --resume {shown(path)})", highlight=False,
                  soft_wrap=True)
    guard = result.guard
    if guard is not None and guard["best_epoch"] is not None:
        certified = guard.get("best_val_certified_accuracy")
        err.print(f"kept the {guard['kept']} model: epoch {guard['best_epoch']} (iteration {guard['best_iteration']}), "
                  f"robust validation accuracy {guard['best_val_robust_accuracy']:.4f}"
                  + (f", certified {certified:.4f}" if certified is not None else "")
                  + (f"; {len(guard['events'])} collapse event(s)" if guard["events"] else ""), highlight=False)
    if metrics["stopped_by_guard"]:
        err.print("[yellow]training stopped by the guard: robust validation accuracy collapsed[/]")
    err.print(f"saved run [bold]{shown(path)}[/]  clean test accuracy {metrics['clean_test_accuracy']:.4f}  "
              f"({metrics['train_seconds']:.1f} s, {metrics['precision']})", highlight=False, soft_wrap=True)


def _progress_reporter(view: Any, stop: Any) -> Callable[["TrainProgress"], None]:
    """The training callback: the training stage's progress (drawn from the first update on, so that a
    refusal before any training leaves nothing behind), epoch lines and warnings."""

    def on_progress(p: "TrainProgress") -> None:
        view.update("training", p.iteration, p.iterations,
                    f"epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}" + ("  stopping…" if stop.requested else ""))
        if p.validation is not None or p.epoch_loss is not None:
            view.message(_describe_progress(p))
        if p.warning is not None:
            err.print(f"[bold yellow]warning:[/] {shown(render_references(p.warning, flag_names()))}", highlight=False,
                      soft_wrap=True)

    return on_progress


def _run_training(
    config: Optional["TrainConfig"], out_dir: Optional[Path], runs_dir: Path, as_json: bool,
    *, resume: Optional[Path] = None, command: str = "train", timeout: float = 600.0,
    epoch_checkpoints: Optional[bool] = None, quiet: bool = False,
) -> None:
    """Check everything that can be checked (settings, device, destination, data, resume state)
    before the first iteration; train; save; report. An interrupted run is saved and exits 130."""
    from ...data.spec import load_dataset
    from ...io.runs import check_run_dir_free
    from ...runtime.coordination import main_decides
    from ...runtime.device import auto_fallback_note, resolve_device
    from ...runtime.precision import resolve_precision
    from ...training.checkpoint import check_resume_fits, load_resume
    from ...training.parallel import check_sync_bn

    state = None
    if resume is not None:
        config, state, _ = load_resume(resume)
    elif config is None:
        raise AdvcliError("nothing to train: give a configuration or `resume`")
    config.validate()
    device = resolve_device(config.device)
    resolve_precision(config.precision, device, training=True)
    check_sync_bn(config.sync_bn, device)
    with joined(config.device, timeout) as context:
        main = context.is_main
        if main:
            say_notes([auto_fallback_note(config.device)])
        target = out_dir if resume is None else out_dir or _resumed_path(resume)
        if target is not None and _saved_by_earlier_attempt(target, context):
            return
        if target is not None:
            main_decides(lambda: check_run_dir_free(target, param="out"), context)
            if main:
                say_notes([_continuing_note(target)])
        with progress_view(quiet or not main) as view:
            with view.working(f"loading {shown(config.data)}"):
                dataset = load_dataset(config.data, on_progress=view.callback())
            if state is not None:
                check_resume_fits(state, config, dataset)
            path, result = _train_with_progress(view, config, dataset, out_dir, runs_dir, resume, context,
                                                epoch_checkpoints)
    if not main:
        if result.interrupted:
            raise typer.Exit(EXIT_INTERRUPTED)
        return
    summary = {"run": str(path), **result.metrics}
    if result.guard is not None:
        summary["guard"] = {key: result.guard[key] for key in ("best_epoch", "best_val_robust_accuracy",
                                                                "best_val_certified_accuracy", "events", "kept")
                            if key in result.guard}
    if as_json:
        print_json(summary)
    else:
        _report_training(path, result, command, rerun_continues=out_dir is not None)
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def _saved_by_earlier_attempt(target: Path, context: Any) -> bool:
    """Whether this is a torchrun restart of a job whose run folder an earlier attempt saved (a
    process died after that): then there is nothing left to do."""
    from ...io.layout import META_FILE
    from ...runtime.distributed import from_main
    from ...runtime.restarts import restart_attempt

    saved = from_main(int(restart_attempt() > 0 and (target / META_FILE).is_file()), context)
    if saved and context.is_main:
        say_notes([f"{shown(target)} was saved by an earlier attempt of this job; nothing left to do"])
    return bool(saved)


def _continuing_note(target: Path) -> Optional[str]:
    from ...training.continuation import checkpoint_path, latest_checkpoint

    iteration = latest_checkpoint(target)
    if not iteration:
        return None
    return (f"continuing from {shown(checkpoint_path(target, iteration))} (iteration {iteration}), left by an "
            "earlier attempt")


def _resumed_path(run: Path) -> Path:
    from ...training.api import resumed_run_path

    return resumed_run_path(run)


def _train_with_progress(view: Any, config: "TrainConfig", dataset: Any, out_dir: Optional[Path], runs_dir: Path,
                         resume: Optional[Path], context: Any, epoch_checkpoints: Optional[bool]
                         ) -> tuple[Path, "TrainResult"]:
    """Train (or resume) with progress and warnings on the process that shows them (`view`), Ctrl-C
    asking every process to stop and save."""
    from ...training.api import resume_training, train

    with graceful_interrupt(launched=launched()) as stop:
        common = dict(dataset=dataset, on_progress=_progress_reporter(view, stop), should_stop=stop,
                      context=context, epoch_checkpoints=epoch_checkpoints)
        if resume is not None:
            return resume_training(resume, out=out_dir, **common)
        return train(config, out=out_dir, runs_dir=runs_dir, **common)


EpochsOpt = typer.Option(30, "--epochs", min=1, help="Passes over the training data.")
TrainBatchSizeOpt = typer.Option(100, "--batch-size", min=1, help="Mini-batch size (under torchrun, the global batch).")
MomentumOpt = typer.Option(0.9, "--momentum", help="SGD momentum.")
ResumeOpt = typer.Option(None, "--resume", help="Continue this interrupted run (into --out, default <RUN>-resumed) with its saved settings.")
KeyedNoiseOpt = typer.Option(False, "--keyed-noise", help="Draw random starts per sample from (seed, iteration, sample index), as runs on several processes always do: the run then gives the same result on any number of processes.")
SyncBnOpt = typer.Option(False, "--sync-bn", help="Under torchrun on GPUs: BatchNorm statistics over the whole global batch (SyncBatchNorm) instead of each process's share.")
EpochCheckpointsOpt = typer.Option(None, "--epoch-checkpoints/--no-epoch-checkpoints", help="Keep the last epoch's resume state in <OUT>.checkpoints/, from which the same command started again (or a torchrun restart) continues (default: on under torchrun with several processes or --max-restarts).")
OptimizerOpt = typer.Option(OptimizerName("sgd"), "--optimizer", help="sgd (with --momentum, the reference's) or adam.")
LrScheduleOpt = typer.Option(LrScheduleName("constant"), "--lr-schedule",
                             help="constant (the reference's); cyclic: 0 up to --lr at 2/5 of training, then down to 0; multistep: x0.1 at 50% and 75%.")


def train_command(
    ctx: typer.Context,
    data: str = DataOpt,
    arch: ModelName = ArchOpt,
    model: Optional[str] = DeprecatedModelOpt,
    epochs: int = EpochsOpt,
    batch_size: int = TrainBatchSizeOpt,
    lr: float = typer.Option(0.01, "--lr", help="Learning rate (SGD with momentum)."),
    momentum: float = MomentumOpt,
    optimizer: OptimizerName = OptimizerOpt,
    lr_schedule: LrScheduleName = LrScheduleOpt,
    seed: int = SeedOpt,
    device: DeviceChoice = DeviceOpt,
    precision: PrecisionChoice = PrecisionOpt,
    keyed_noise: bool = KeyedNoiseOpt,
    sync_bn: bool = SyncBnOpt,
    resume: Optional[Path] = ResumeOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder to create (default: runs/<timestamp>-standard)."),
    runs_dir: Path = RunsDirOpt,
    epoch_checkpoints: Optional[bool] = EpochCheckpointsOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a classifier the standard way (the reference example's loop and defaults); under
    torchrun, on several processes sharing each mini-batch."""
    if resume is not None:
        _reject_options_with_resume(ctx)
        _run_training(None, out_dir, runs_dir, as_json, resume=resume, command="train", timeout=timeout,
                      epoch_checkpoints=epoch_checkpoints, quiet=quiet)
        return
    from ...training.config import TrainConfig

    config = TrainConfig.from_flat(dict(
        data=data, arch=_architecture(arch, model), epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
        seed=seed, device=device.value, method="none", optimizer=optimizer.value, lr_schedule=lr_schedule.value,
        precision=precision.value, keyed_noise=keyed_noise, sync_bn=sync_bn))
    _run_training(config, out_dir, runs_dir, as_json, timeout=timeout, epoch_checkpoints=epoch_checkpoints, quiet=quiet)


def robust_train_command(
    ctx: typer.Context,
    eps: str = typer.Option("0.1", "--eps", help="L-inf radius to be robust to (pixel range [0, 1]; a number or a fraction such as 8/255)."),
    method: MethodName = typer.Option(MethodName("fgsm-rs"), "--method", help=METHOD_HELP),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Adversarial step size (default: fgsm-rs 1.25·eps; pgd, trades 2.5·eps/iters; free, n-fgsm eps)."),
    init: Optional[str] = typer.Option(None, "--init", help="fgsm-rs and pgd: random (default) or zero start."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Attack steps per batch (default: pgd, trades 10; fgsm-rs 1, >1 = BIM training)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Keep adversarial images inside [0, 1]."),
    beta: float = typer.Option(6.0, "--beta", help="trades: weight of the KL term."),
    replays: Optional[int] = typer.Option(None, "--replays", help="Updates per mini-batch in a row (free: m, default 4); epochs are divided by it, rounded up."),
    eps_ramp: int = typer.Option(0, "--eps-ramp", help="Grow eps linearly from 0 over this many epochs."),
    val_split: Optional[float] = typer.Option(None, "--val-split", help="Share of the training data held out for the guard (default 0.1; 0 turns it off)."),
    val_every: int = typer.Option(0, "--val-every", help="Also validate every N iterations (0: once per epoch)."),
    val_iters: int = typer.Option(10, "--val-iters", help="PGD steps of the robust validation (alpha 2.5·eps/steps, random start)."),
    collapse_drop: float = typer.Option(0.2, "--collapse-drop", help="A drop of robust validation accuracy by more than this from the best is a collapse."),
    on_collapse: OnCollapseName = typer.Option(OnCollapseName("stop"), "--on-collapse", help="stop (keep the best model), rollback (to the best, lr halved) or continue (record only)."),
    data: str = DataOpt,
    arch: ModelName = ArchOpt,
    model: Optional[str] = DeprecatedModelOpt,
    epochs: int = EpochsOpt,
    batch_size: int = TrainBatchSizeOpt,
    lr: float = typer.Option(0.01, "--lr"),
    momentum: float = MomentumOpt,
    optimizer: OptimizerName = OptimizerOpt,
    lr_schedule: LrScheduleName = LrScheduleOpt,
    seed: int = SeedOpt,
    device: DeviceChoice = DeviceOpt,
    precision: PrecisionChoice = PrecisionOpt,
    keyed_noise: bool = KeyedNoiseOpt,
    sync_bn: bool = SyncBnOpt,
    resume: Optional[Path] = ResumeOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder to create (default: runs/<timestamp>-robust)."),
    runs_dir: Path = RunsDirOpt,
    epoch_checkpoints: Optional[bool] = EpochCheckpointsOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Adversarial training (FGSM from a random start, step 1.25·eps, by default), guarded against
    catastrophic overfitting by PGD accuracy on held-out training data; under torchrun, on several
    processes sharing each mini-batch."""
    if resume is not None:
        _reject_options_with_resume(ctx)
        _run_training(None, out_dir, runs_dir, as_json, resume=resume, command="robust-train", timeout=timeout,
                      epoch_checkpoints=epoch_checkpoints, quiet=quiet)
        return
    from ...evaluation.config import parse_eps
    from ...training.config import TrainConfig

    radius = parse_eps(eps)
    if isinstance(radius, tuple):
        raise AdvcliError(f"`eps` takes one radius for training, got {eps!r}", param="eps")

    config = TrainConfig.from_flat(dict(
        data=data, arch=_architecture(arch, model), epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
        seed=seed, device=device.value, method=method.value, eps=radius, alpha=alpha, init=init, iters=iters, clip=clip,
        beta=beta, replays=replays, optimizer=optimizer.value, lr_schedule=lr_schedule.value, eps_ramp=eps_ramp,
        val_split=val_split, val_every=val_every, val_iters=val_iters, collapse_drop=collapse_drop,
        on_collapse=on_collapse.value, precision=precision.value, keyed_noise=keyed_noise, sync_bn=sync_bn))
    _run_training(config, out_dir, runs_dir, as_json, command="robust-train", timeout=timeout,
                  epoch_checkpoints=epoch_checkpoints, quiet=quiet)


def register(app: typer.Typer) -> None:
    app.command("train")(handles_errors(train_command))
    app.command("robust-train")(handles_errors(robust_train_command))
