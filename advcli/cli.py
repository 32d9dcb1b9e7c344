"""The ``advcli`` command line: parses options, calls the library, renders results.

Exit codes: 0 success; 1 a ``--min-*`` threshold was missed; 2 bad usage or bad input;
130 interrupted. Human-readable output and progress go to stderr; ``--json`` prints only JSON on stdout.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from . import __version__
from .attacks import AttackName, NormName
from .backends import BackendName
from .crafting import CraftConfig, craft
from .data import load_dataset
from .devices import DeviceChoice, auto_fallback_note, keep_freed_memory, resolve_device
from .errors import AdvcliError
from .evaluation import EvalConfig, EvalReport, check_plot_path, evaluate, load_for_evaluation, parse_eps, save_curve_plot
from .guard import OnCollapse
from .interrupts import graceful_interrupt
from .models import DEFAULT_MODEL, ModelName
from .precision import PrecisionChoice, resolve_precision
from .runs import DEFAULT_RUNS_DIR, check_run_dir_free, load_run, resolve_run_path, write_json_atomic
from .training import (LrSchedule, OptimizerName, TrainConfig, TrainingMethod, TrainProgress, TrainResult, load_resume,
                       resume_training, resumed_run_path, train)

EXIT_THRESHOLD = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="advcli",
    help="Train image classifiers robust to adversarial examples, attack them, measure and export them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def handles_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our own exceptions into a one-line message and exit code 2; Ctrl-C into 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AdvcliError as error:
            _fail(str(error))
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)

    return wrapper


def _version(value: bool) -> None:
    if value:
        out.print(f"advcli {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """advcli: adversarial robustness from the command line."""


# Shared options -----------------------------------------------------------------------------

DataOpt = typer.Option("digits", "--data", help="Dataset: digits (built in), mnist:DIR, fashion-mnist:DIR, cifar10:DIR, npz:FILE, folder:DIR.")
EvalDataOpt = typer.Option(None, "--data", help="Dataset to evaluate on (default: the model's training data).")
DeviceOpt = typer.Option(DeviceChoice.auto, "--device", help="auto (CUDA when present), cpu or cuda.")
RunsDirOpt = typer.Option(DEFAULT_RUNS_DIR, "--runs-dir", help="Folder holding run folders.")
ModelRunOpt = typer.Option(None, "--model", help="Run folder to use (default: the newest under --runs-dir).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
QueriesOpt = typer.Option(None, "--queries", help="Square's queries per sample (square and auto; default 1000).")
SeedOpt = typer.Option(0, "--seed", help="Random seed (shuffling, initialisation, random starts, subsets).")
PrecisionOpt = typer.Option(
    PrecisionChoice.auto, "--precision",
    help="Precision of attack gradients and training steps: auto (bf16 where the hardware has it natively, "
         "else fp32), fp32, bf16 or fp16 (CUDA, attacks only). Reported accuracies are always classified in fp32.")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")


# Training -----------------------------------------------------------------------------------


def _reject_options_with_resume(ctx: typer.Context) -> None:
    """--resume continues with the run's saved settings; any training option given with it is an error."""
    allowed = {"resume", "out_dir", "runs_dir", "as_json"}
    given = [param.opts[0] for param in ctx.command.params
             if param.name not in allowed and getattr(ctx.get_parameter_source(param.name), "name", None) == "COMMANDLINE"]
    if given:
        raise AdvcliError(f"--resume continues a run with its saved settings; drop {', '.join(given)}")


def _describe_progress(p: TrainProgress) -> str:
    parts = [f"epoch {p.epoch}/{p.epochs}" if p.epoch_loss is not None else f"iteration {p.iteration}"]
    if p.epoch_loss is not None:
        parts.append(f"loss {p.epoch_loss:.4f}")
    if p.validation is not None:
        parts.append(f"val clean {p.validation.accuracy:.4f}  val robust {p.validation.robust_accuracy:.4f}")
    return "  ".join(parts)


def _report_training(path: Path, result: TrainResult, command: str) -> None:
    metrics = result.metrics
    if result.interrupted:
        err.print(f"[yellow]stopped early at iteration {metrics['iterations']}; the model so far and a resume "
                  f"state were saved[/] (continue with: advcli {command} --resume {path})", highlight=False)
    guard = result.guard
    if guard is not None and guard["best_epoch"] is not None:
        err.print(f"kept the {guard['kept']} model: epoch {guard['best_epoch']} (iteration {guard['best_iteration']}), "
                  f"robust validation accuracy {guard['best_val_robust_accuracy']:.4f}"
                  + (f"; {len(guard['events'])} collapse event(s)" if guard["events"] else ""), highlight=False)
    if metrics["stopped_by_guard"]:
        err.print("[yellow]training stopped by the guard: robust validation accuracy collapsed[/]")
    err.print(f"saved run [bold]{path}[/]  clean test accuracy {metrics['clean_test_accuracy']:.4f}  "
              f"({metrics['train_seconds']:.1f} s, {metrics['precision']})", highlight=False)


def _say_notes(notes: List[Optional[str]]) -> None:
    for note in notes:
        if note:
            err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def _run_training(
    config: Optional[TrainConfig], out_dir: Optional[Path], runs_dir: Path, as_json: bool,
    *, resume: Optional[Path] = None, command: str = "train",
) -> None:
    if resume is not None:
        config, _, _ = load_resume(resume)
        target: Optional[Path] = out_dir if out_dir is not None else resumed_run_path(resume)
    elif config is not None:
        target = out_dir
    else:
        raise AdvcliError("nothing to train: give a configuration or --resume")
    config.validate()
    resolve_precision(config.precision, resolve_device(config.device), training=True)
    _say_notes([auto_fallback_note(config.device)])
    if target is not None:
        check_run_dir_free(target)
    with err.status(f"loading {config.data}"):
        dataset = load_dataset(config.data)
    with _progress() as progress, graceful_interrupt() as stop:
        task = progress.add_task("training", total=None, info="")

        def on_progress(p: TrainProgress) -> None:
            progress.update(task, total=p.iterations, completed=p.iteration,
                            info=f"epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}" + ("  [yellow]stopping…" if stop.requested else ""))
            if p.validation is not None or p.epoch_loss is not None:
                progress.console.print(_describe_progress(p), highlight=False)
            if p.warning is not None:
                progress.console.print(f"[bold yellow]warning:[/] {p.warning}", highlight=False)

        if resume is not None:
            path, result = resume_training(resume, out=out_dir, dataset=dataset, on_progress=on_progress, should_stop=stop)
        else:
            path, result = train(config, out=out_dir, runs_dir=runs_dir, dataset=dataset,
                                 on_progress=on_progress, should_stop=stop)
    summary = {"run": str(path), **result.metrics}
    if result.guard is not None:
        summary["guard"] = {key: result.guard[key] for key in ("best_epoch", "best_val_robust_accuracy", "events", "kept")}
    if as_json:
        _print_json(summary)
        return
    _report_training(path, result, command)


ResumeOpt = typer.Option(None, "--resume", help="Continue this interrupted run (into --out, default <RUN>-resumed) with its saved settings.")
OptimizerOpt = typer.Option(OptimizerName.sgd, "--optimizer", help="sgd (with --momentum, the reference's) or adam.")
LrScheduleOpt = typer.Option(LrSchedule.constant, "--lr-schedule",
                             help="constant (the reference's); cyclic: 0 up to --lr at 2/5 of training, then down to 0; multistep: x0.1 at 50% and 75%.")


@app.command("train")
@handles_errors
def train_command(
    ctx: typer.Context,
    data: str = DataOpt,
    model: ModelName = typer.Option(DEFAULT_MODEL, "--model", help="Architecture."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(100, "--batch-size", min=1),
    lr: float = typer.Option(0.01, "--lr", help="Learning rate (SGD with momentum)."),
    momentum: float = typer.Option(0.9, "--momentum"),
    optimizer: OptimizerName = OptimizerOpt,
    lr_schedule: LrSchedule = LrScheduleOpt,
    seed: int = SeedOpt,
    device: DeviceChoice = DeviceOpt,
    precision: PrecisionChoice = PrecisionOpt,
    resume: Optional[Path] = ResumeOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder to create (default: runs/<timestamp>-standard)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a classifier the standard way (the reference example's loop and defaults)."""
    if resume is not None:
        _reject_options_with_resume(ctx)
        _run_training(None, out_dir, runs_dir, as_json, resume=resume, command="train")
        return
    config = TrainConfig(data=data, model=model.value, epochs=epochs, batch_size=batch_size, lr=lr,
                         momentum=momentum, seed=seed, device=device.value, method="none",
                         optimizer=optimizer.value, lr_schedule=lr_schedule.value, precision=precision.value)
    _run_training(config, out_dir, runs_dir, as_json)


@app.command("robust-train")
@handles_errors
def robust_train_command(
    ctx: typer.Context,
    eps: float = typer.Option(0.1, "--eps", help="L-inf radius to be robust to (pixel range [0, 1])."),
    method: TrainingMethod = typer.Option("fgsm-rs", "--method", help="Training method: fgsm-rs, pgd, trades, free, n-fgsm (none: plain training)."),
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
    on_collapse: OnCollapse = typer.Option("stop", "--on-collapse", help="stop (keep the best model), rollback (to the best, lr halved) or continue (record only)."),
    data: str = DataOpt,
    model: ModelName = typer.Option(DEFAULT_MODEL, "--model", help="Architecture."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(100, "--batch-size", min=1),
    lr: float = typer.Option(0.01, "--lr"),
    momentum: float = typer.Option(0.9, "--momentum"),
    optimizer: OptimizerName = OptimizerOpt,
    lr_schedule: LrSchedule = LrScheduleOpt,
    seed: int = SeedOpt,
    device: DeviceChoice = DeviceOpt,
    precision: PrecisionChoice = PrecisionOpt,
    resume: Optional[Path] = ResumeOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder to create (default: runs/<timestamp>-robust)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Adversarial training (FGSM from a random start, step 1.25·eps, by default), guarded against
    catastrophic overfitting by PGD accuracy on held-out training data."""
    if resume is not None:
        _reject_options_with_resume(ctx)
        _run_training(None, out_dir, runs_dir, as_json, resume=resume, command="robust-train")
        return
    config = TrainConfig(data=data, model=model.value, epochs=epochs, batch_size=batch_size, lr=lr,
                         momentum=momentum, seed=seed, device=device.value, method=method.value,
                         eps=eps, alpha=alpha, init=init, iters=iters, clip=clip, beta=beta, replays=replays,
                         optimizer=optimizer.value, lr_schedule=lr_schedule.value, eps_ramp=eps_ramp,
                         val_split=val_split, val_every=val_every, val_iters=val_iters,
                         collapse_drop=collapse_drop, on_collapse=on_collapse.value, precision=precision.value)
    _run_training(config, out_dir, runs_dir, as_json, command="robust-train")


# Attacks and evaluation ---------------------------------------------------------------------


def _announce_run(model: Optional[str], runs_dir: Path) -> None:
    if model is None:
        path, _ = resolve_run_path(None, runs_dir)
        err.print(f"using the newest run: [bold]{path}[/]", highlight=False)


def _attack_progress(progress: Progress) -> Callable[[str, int, int], None]:
    tasks: dict[str, Any] = {}

    def on_progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total, info="")
        progress.update(tasks[name], completed=done)

    return on_progress


@app.command("attack")
@handles_errors
def attack_command(
    attack: AttackName = typer.Option("bim", "--attack", help="Attack to run."),
    eps: float = typer.Option(0.1, "--eps", help="Radius in the --norm."),
    norm: NormName = typer.Option("linf", "--norm", help="Threat model: linf or l2."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step size (default per attack; BIM 0.01)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations (default per attack; BIM 20)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts (need --init random)."),
    init: Optional[str] = typer.Option(None, "--init", help="zero or random start (default per attack)."),
    target: Optional[str] = typer.Option(None, "--target", help="Targeted attack towards a class index, random, least-likely or top-N; the targets are saved too."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip adversarial images to [0, 1] (--no-clip: the reference's unclipped threat model)."),
    model: Optional[str] = ModelRunOpt,
    data: Optional[str] = EvalDataOpt,
    split: str = typer.Option("test", "--split", help="train or test."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Attack a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = typer.Option(500, "--batch-size", min=1),
    device: DeviceChoice = DeviceOpt,
    precision: PrecisionChoice = PrecisionOpt,
    queries: Optional[int] = QueriesOpt,
    out_file: Optional[str] = typer.Option(None, "--out", help="Output .npz (default: <run>/attacks/<attack>[-l2]-eps<eps>[-to-<target>]-<split>.npz)."),
    grid: Optional[str] = typer.Option(None, "--grid", help="PNG grid of 16 adversarial images with predictions (default: beside --out)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Craft adversarial examples and save them with a picture of the model's predictions."""
    config = CraftConfig(model=model, data=data, split=split, attack=attack.value, eps=eps, alpha=alpha,
                         iters=iters, restarts=restarts, init=init, clip=clip, samples=samples, seed=seed,
                         batch_size=batch_size, device=device.value, precision=precision.value, queries=queries,
                         norm=norm.value, target=target, out=out_file, grid=grid)
    config.as_eval_config().validate()
    _announce_run(model, runs_dir)
    _say_notes([auto_fallback_note(config.device)])
    with _progress() as progress:
        result = craft(config, runs_dir=runs_dir, on_progress=_attack_progress(progress))
    if as_json:
        _print_json(result.to_dict())
        return
    err.print(f"saved {result.samples} adversarial examples to [bold]{result.path}[/] and a grid to [bold]{result.grid}[/]", highlight=False)
    err.print(f"accuracy: clean {result.clean_accuracy:.4f}, adversarial {result.adversarial_accuracy:.4f} "
              f"({_precision_note(result.precision)})", highlight=False)
    if result.target_hit_rate is not None:
        err.print(f"target {result.attack['target']} reached on {result.target_hit_rate:.4f} of the samples aimed at it"
                  + (f" ({result.untargetable} already of that class, left as they were)" if result.untargetable else ""),
                  highlight=False)


def _attack_label(a: Any) -> str:
    label = a.name + ("" if a.clip else " (no clip)") + ("" if a.norm == "linf" else f" ({a.norm})")
    return label + (f" → {a.target}" if a.target is not None else "")


def _precision_note(precision: str) -> str:
    if precision == "fp32":
        return "fp32"
    return f"attack gradients in {precision}, accuracies classified in fp32"


def _render_report(report: EvalReport) -> None:
    runs_on = report.backend + (f" on {', '.join(report.execution_providers)}" if report.execution_providers else
                                f" on {report.device}") + f"; {_precision_note(report.precision)}"
    table = Table(title=f"{report.model} on {report.data} ({report.split}, {report.samples} samples)",
                  caption=runs_on)
    for column in ("evaluation", "eps", "alpha", "iters", "restarts", "init", "accuracy"):
        table.add_column(column, justify="right" if column != "evaluation" else "left")
    table.add_row("clean", "", "", "", "", "", f"{report.clean_accuracy:.4f}")
    for result in report.attacks:
        a = result.attack
        table.add_row(result.label, f"{a.eps:g}", f"{a.alpha:g}", str(a.iters),
                      str(a.restarts), a.init, f"{result.robust_accuracy:.4f}")
        for member in result.members:
            table.add_row(f"  [dim]{member['name']}" + (f" → {member['target']}" if member["target"] else ""),
                          "", "", "", "", "", f"[dim]fooled {member['fooled']}")
    if len(report.attacks) > 1:
        table.add_row("[bold]worst case", "", "", "", "", "", f"[bold]{report.robust_accuracy:.4f}")
    out.print(table)
    if len(report.curve) > 1:
        _render_curve(report)
    if report.per_class is not None:
        _render_per_class(report)
    _render_sanity(report)
    for failure in report.failures:
        err.print(f"[bold red]threshold missed:[/] {failure}", highlight=False)


def _render_curve(report: EvalReport) -> None:
    several = len(report.attacks) > 1
    table = Table(title=f"Robust accuracy against eps ({report.config.norm})")
    table.add_column("eps", justify="right")
    for result in report.attacks:
        table.add_column(_attack_label(result.attack), justify="right")
    if several:
        table.add_column("worst case", justify="right")
    for point in report.curve:
        cells = [f"{result.robust_accuracy:.4f}" for result in point.attacks]
        table.add_row(f"{point.eps:g}", *cells, *([f"[bold]{point.robust_accuracy:.4f}"] if several else []))
    out.print(table)


def _render_per_class(report: EvalReport) -> None:
    several = len(report.attacks) > 1
    table = Table(title=f"Per class at eps {report.curve[-1].eps:g}")
    for column in ("class", "samples", "clean", *(_attack_label(r.attack) for r in report.attacks)):
        table.add_column(column, justify="left" if column == "class" else "right")
    if several:
        table.add_column("worst case", justify="right")

    def cell(value: Optional[float]) -> str:
        return "–" if value is None else f"{value:.4f}"

    for row in report.per_class or []:
        cells = [cell(row.attacks[r.attack.name]) for r in report.attacks]
        table.add_row(row.name if row.name == str(row.index) else f"{row.index} {row.name}", str(row.samples),
                      cell(row.clean_accuracy), *cells, *([f"[bold]{cell(row.robust_accuracy)}"] if several else []))
    out.print(table)


def _render_sanity(report: EvalReport) -> None:
    fired = [check for check in report.sanity if check.fired]
    for check in fired:
        out.print(f"[bold yellow]sanity check fired:[/] [bold]{check.name}[/]: {check.detail}", highlight=False)
    if not fired:
        unchecked = sum(not check.checked for check in report.sanity)
        out.print("[green]all sanity checks passed[/]" + (f" ({unchecked} not checked)" if unchecked else ""),
                  highlight=False)


@app.command("eval")
@handles_errors
def eval_command(
    attack: List[AttackName] = typer.Option(["bim"], "--attack", help="Attack(s) to evaluate; repeat for several (worst case per sample). On an ONNX file, white-box attacks are transferred from its source checkpoint; square queries the file itself. auto: APGD-CE, targeted APGD-DLR on the top 3 wrong classes, then Square (in the --norm), each on the samples still robust."),
    eps: str = typer.Option("0.1", "--eps", help="Radius in the --norm; a comma-separated list (0,0.02,0.05,0.1) gives a robustness curve (thresholds apply to the largest)."),
    norm: NormName = typer.Option("linf", "--norm", help="Threat model: linf or l2."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step size (default per attack; BIM 0.01, APGD 2·eps to start)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations (default per attack; BIM 20, APGD 100)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts (need --init random); each runs on the samples still robust."),
    init: Optional[str] = typer.Option(None, "--init", help="zero or random start (default per attack)."),
    target: Optional[str] = typer.Option(None, "--target", help="Targeted attack towards a class index, random, least-likely or top-N (a sample still counts as non-robust when misclassified)."),
    queries: Optional[int] = typer.Option(None, "--queries", help="Square's queries per sample (square and auto; default 1000, AutoAttack's standard 5000)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip adversarial images to [0, 1] (--no-clip: the reference's unclipped threat model)."),
    per_class: bool = typer.Option(False, "--per-class", help="Add per-class clean and robust accuracy."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write robust accuracy against eps to this PNG."),
    sanity_samples: int = typer.Option(100, "--sanity-samples", help="Samples for the sanity checks' extra attack runs (0 skips them)."),
    model: Optional[str] = typer.Option(None, "--model", help="Run folder or exported .onnx file (default: the newest run under --runs-dir)."),
    backend: Optional[BackendName] = typer.Option(None, "--backend", help="torch or onnxruntime (default: follows from --model)."),
    source: Optional[str] = typer.Option(None, "--source", help="Run that crafts white-box attacks for transfer (default for ONNX: the checkpoint named in the file)."),
    data: Optional[str] = EvalDataOpt,
    split: str = typer.Option("test", "--split", help="train or test."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Evaluate a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = typer.Option(500, "--batch-size", min=1),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="auto (CUDA when present), cpu or cuda; for ONNX files the onnxruntime execution provider too."),
    precision: PrecisionChoice = typer.Option(
        PrecisionChoice.auto, "--precision",
        help="Precision of white-box attack gradients: auto (bf16 where the hardware has it natively, else fp32), "
             "fp32, bf16 or fp16 (CUDA). Reported accuracies are always classified in fp32; black-box queries run "
             "in fp32; for an ONNX file it applies to the torch transfer source only."),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Exit 1 when clean accuracy is below this."),
    min_robust_accuracy: Optional[float] = typer.Option(None, "--min-robust-accuracy", help="Exit 1 when robust accuracy is below this."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Also write the JSON report to this file."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Clean and robust accuracy (worst case per sample over the attacks), curves over eps,
    per-class figures and sanity checks; thresholds for CI gates."""
    config = EvalConfig(model=model, data=data, split=split, attacks=tuple(a.value for a in attack),
                        eps=parse_eps(eps), alpha=alpha, iters=iters, restarts=restarts, init=init, clip=clip,
                        samples=samples, seed=seed, batch_size=batch_size, device=device.value,
                        min_accuracy=min_accuracy, min_robust_accuracy=min_robust_accuracy, norm=norm.value,
                        target=target, queries=queries, per_class=per_class, sanity_samples=sanity_samples,
                        backend=backend.value if backend else None, source=source, precision=precision.value)
    config.validate()
    if plot is not None:
        check_plot_path(plot)
    _announce_run(model, runs_dir)
    with _progress() as progress:
        report = evaluate(config, runs_dir=runs_dir, on_progress=_attack_progress(progress))
    _say_notes(report.notes)
    payload = report.to_dict()
    if report_file is not None:
        write_json_atomic(report_file, payload)
    if plot is not None:
        save_curve_plot(report, plot)
    if as_json:
        _print_json(payload)
    else:
        _render_report(report)
    if not report.passed:
        raise typer.Exit(EXIT_THRESHOLD)


@app.command("export")
@handles_errors
def export_command(
    model: Optional[str] = ModelRunOpt,
    out_file: Optional[Path] = typer.Option(None, "--out", help="ONNX file to write (default: <run>/model.onnx)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
    parity_samples: int = typer.Option(256, "--parity-samples", help="Test inputs on which onnxruntime must reproduce the checkpoint's logits."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Export a run to ONNX, verified by onnx.checker and logit parity under onnxruntime."""
    from .export import export_onnx

    path, automatic = resolve_run_path(model, runs_dir)
    if automatic:
        err.print(f"using the newest run: [bold]{path}[/]", highlight=False)
    run = load_run(path)
    result = export_onnx(run, out_file or run.path / "model.onnx", opset=opset, parity_samples=parity_samples)
    if as_json:
        _print_json(result.to_dict())
        return
    err.print(f"exported [bold]{result.path}[/] (opset {result.opset}); parity on {result.parity_samples} "
              f"samples: max |diff| {result.max_abs_diff:.2e}, argmax agreement {result.argmax_agreement:.4f} "
              f"(saved to {result.parity_file})", highlight=False)


def run() -> None:
    """Console-script entry point. The process is ours, so freed memory is kept for reuse (see
    :func:`advcli.devices.keep_freed_memory`; ``ADVCLI_KEEP_FREED_MEMORY=0`` turns that off)."""
    keep_freed_memory()
    app()
