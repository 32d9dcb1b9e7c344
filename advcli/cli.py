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
from .backends import BackendName
from .blackbox import DEFAULT_QUERIES, BlackBoxConfig
from .crafting import CraftConfig, craft
from .data import load_dataset
from .devices import DeviceChoice, auto_fallback_note, resolve_device
from .errors import AdvcliError
from .evaluation import EvalAttackName, EvalConfig, EvalReport, evaluate, load_for_evaluation
from .interrupts import graceful_interrupt
from .models import DEFAULT_MODEL, ModelName
from .runs import DEFAULT_RUNS_DIR, check_run_dir_free, load_run, resolve_run_path, write_json_atomic
from .training import TrainConfig, TrainingMethod, TrainProgress, train

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
QueriesOpt = typer.Option(DEFAULT_QUERIES, "--queries", help="Query budget per sample of black-box attacks (square).")
SeedOpt = typer.Option(0, "--seed", help="Random seed (shuffling, initialisation, random starts, subsets).")


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


def _say_notes(notes: List[Optional[str]]) -> None:
    for note in notes:
        if note:
            err.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


def _run_training(config: TrainConfig, out_dir: Optional[Path], runs_dir: Path, as_json: bool) -> None:
    config.validate()
    resolve_device(config.device)
    _say_notes([auto_fallback_note(config.device)])
    if out_dir is not None:
        check_run_dir_free(out_dir)
    with err.status(f"loading {config.data}"):
        dataset = load_dataset(config.data)
    with _progress() as progress, graceful_interrupt() as stop:
        task = progress.add_task("training", total=None, info="")

        def on_progress(p: TrainProgress) -> None:
            progress.update(task, total=p.iterations, completed=p.iteration,
                            info=f"epoch {p.epoch}/{p.epochs}  loss {p.loss:.4f}" + ("  [yellow]stopping…" if stop.requested else ""))

        path, result = train(config, out=out_dir, runs_dir=runs_dir, dataset=dataset,
                             on_progress=on_progress, should_stop=stop)
    summary = {"run": str(path), **result.metrics}
    if as_json:
        _print_json(summary)
        return
    if result.interrupted:
        err.print(f"[yellow]stopped early at iteration {result.metrics['iterations']}; the model so far was saved[/]")
    err.print(f"saved run [bold]{path}[/]  clean test accuracy {result.metrics['clean_test_accuracy']:.4f}  "
              f"({result.metrics['train_seconds']:.1f} s)", highlight=False)


@app.command("train")
@handles_errors
def train_command(
    data: str = DataOpt,
    model: ModelName = typer.Option(DEFAULT_MODEL, "--model", help="Architecture."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(100, "--batch-size", min=1),
    lr: float = typer.Option(0.01, "--lr", help="Learning rate (SGD with momentum)."),
    momentum: float = typer.Option(0.9, "--momentum"),
    seed: int = SeedOpt,
    device: DeviceChoice = DeviceOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder to create (default: runs/<timestamp>-standard)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Train a classifier the standard way (the reference example's loop and defaults)."""
    config = TrainConfig(data=data, model=model.value, epochs=epochs, batch_size=batch_size, lr=lr,
                         momentum=momentum, seed=seed, device=device.value, method="none")
    _run_training(config, out_dir, runs_dir, as_json)


@app.command("robust-train")
@handles_errors
def robust_train_command(
    eps: float = typer.Option(0.1, "--eps", help="L-inf radius to be robust to (pixel range [0, 1])."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Adversarial step size (default 1.25·eps)."),
    init: str = typer.Option("random", "--init", help="Perturbation start: random (FGSM-RS) or zero."),
    iters: int = typer.Option(1, "--iters", help="Attack iterations per batch (1 = FGSM, >1 = BIM training)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Keep adversarial images inside [0, 1]."),
    method: TrainingMethod = typer.Option("fgsm-rs", "--method", help="Adversarial training method."),
    data: str = DataOpt,
    model: ModelName = typer.Option(DEFAULT_MODEL, "--model", help="Architecture."),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(100, "--batch-size", min=1),
    lr: float = typer.Option(0.01, "--lr"),
    momentum: float = typer.Option(0.9, "--momentum"),
    seed: int = SeedOpt,
    device: DeviceChoice = DeviceOpt,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder to create (default: runs/<timestamp>-robust)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Adversarial training: FGSM from a random start with step 1.25·eps by default."""
    config = TrainConfig(data=data, model=model.value, epochs=epochs, batch_size=batch_size, lr=lr,
                         momentum=momentum, seed=seed, device=device.value, method=method.value,
                         eps=eps, alpha=alpha, init=init, iters=iters, clip=clip)
    _run_training(config, out_dir, runs_dir, as_json)


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
    attack: EvalAttackName = typer.Option("bim", "--attack", help="Attack to run."),
    eps: float = typer.Option(0.1, "--eps", help="L-inf radius."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step size (default per attack; BIM 0.01)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations (default per attack; BIM 20)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts (need --init random)."),
    init: Optional[str] = typer.Option(None, "--init", help="zero or random start (default per attack)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip adversarial images to [0, 1] (--no-clip: the reference's unclipped threat model)."),
    model: Optional[str] = ModelRunOpt,
    data: Optional[str] = EvalDataOpt,
    split: str = typer.Option("test", "--split", help="train or test."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Attack a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = typer.Option(500, "--batch-size", min=1),
    device: DeviceChoice = DeviceOpt,
    queries: int = QueriesOpt,
    out_file: Optional[str] = typer.Option(None, "--out", help="Output .npz (default: <run>/attacks/<attack>-eps<eps>-<split>.npz)."),
    grid: Optional[str] = typer.Option(None, "--grid", help="PNG grid of 16 adversarial images with predictions (default: beside --out)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Craft adversarial examples and save them with a picture of the model's predictions."""
    config = CraftConfig(model=model, data=data, split=split, attack=attack.value, eps=eps, alpha=alpha,
                         iters=iters, restarts=restarts, init=init, clip=clip, samples=samples, seed=seed,
                         batch_size=batch_size, device=device.value, queries=queries, out=out_file, grid=grid)
    config.as_eval_config().validate()
    _announce_run(model, runs_dir)
    _say_notes([auto_fallback_note(config.device)])
    with _progress() as progress:
        result = craft(config, runs_dir=runs_dir, on_progress=_attack_progress(progress))
    if as_json:
        _print_json(result.to_dict())
        return
    err.print(f"saved {result.samples} adversarial examples to [bold]{result.path}[/] and a grid to [bold]{result.grid}[/]", highlight=False)
    err.print(f"accuracy: clean {result.clean_accuracy:.4f}, adversarial {result.adversarial_accuracy:.4f}", highlight=False)


def _attack_cells(attack: Any) -> List[str]:
    """alpha, iters, restarts, init for white-box attacks; the query budget for black-box ones."""
    if isinstance(attack, BlackBoxConfig):
        return ["", f"{attack.queries} queries", "", ""]
    return [f"{attack.alpha:g}", str(attack.iters), str(attack.restarts), attack.init]


def _render_report(report: EvalReport) -> None:
    runs_on = report.backend + (f" on {', '.join(report.execution_providers)}" if report.execution_providers else
                                f" on {report.device}")
    table = Table(title=f"{report.model} on {report.data} ({report.split}, {report.samples} samples)",
                  caption=runs_on)
    for column in ("evaluation", "eps", "alpha", "iters", "restarts", "init", "accuracy"):
        table.add_column(column, justify="right" if column != "evaluation" else "left")
    table.add_row("clean", "", "", "", "", "", f"{report.clean_accuracy:.4f}")
    for result in report.attacks:
        table.add_row(result.label, f"{result.attack.eps:g}", *_attack_cells(result.attack),
                      f"{result.robust_accuracy:.4f}")
    if len(report.attacks) > 1:
        table.add_row("[bold]worst case", "", "", "", "", "", f"[bold]{report.robust_accuracy:.4f}")
    out.print(table)
    for failure in report.failures:
        err.print(f"[bold red]threshold missed:[/] {failure}", highlight=False)


@app.command("eval")
@handles_errors
def eval_command(
    attack: List[EvalAttackName] = typer.Option(["bim"], "--attack", help="Attack(s) to evaluate; repeat for several (worst case per sample). On an ONNX file, white-box attacks are transferred from its source checkpoint; square attacks the file itself."),
    eps: float = typer.Option(0.1, "--eps", help="L-inf radius."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step size (default per attack; BIM 0.01)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations (default per attack; BIM 20)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts (need --init random)."),
    init: Optional[str] = typer.Option(None, "--init", help="zero or random start (default per attack)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip adversarial images to [0, 1] (--no-clip: the reference's unclipped threat model)."),
    queries: int = QueriesOpt,
    model: Optional[str] = typer.Option(None, "--model", help="Run folder or exported .onnx file (default: the newest run under --runs-dir)."),
    backend: Optional[BackendName] = typer.Option(None, "--backend", help="torch or onnxruntime (default: follows from --model)."),
    source: Optional[str] = typer.Option(None, "--source", help="Run that crafts white-box attacks for transfer (default for ONNX: the checkpoint named in the file)."),
    data: Optional[str] = EvalDataOpt,
    split: str = typer.Option("test", "--split", help="train or test."),
    samples: Optional[int] = typer.Option(None, "--samples", help="Evaluate a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = typer.Option(500, "--batch-size", min=1),
    device: DeviceChoice = typer.Option(DeviceChoice.auto, "--device", help="auto (CUDA when present), cpu or cuda; for ONNX files the onnxruntime execution provider too."),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Exit 1 when clean accuracy is below this."),
    min_robust_accuracy: Optional[float] = typer.Option(None, "--min-robust-accuracy", help="Exit 1 when robust accuracy is below this."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Also write the JSON report to this file."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Clean and robust accuracy (worst case per sample over the attacks); thresholds for CI gates."""
    config = EvalConfig(model=model, data=data, split=split, attacks=tuple(a.value for a in attack), eps=eps,
                        alpha=alpha, iters=iters, restarts=restarts, init=init, clip=clip, samples=samples,
                        seed=seed, batch_size=batch_size, device=device.value, min_accuracy=min_accuracy,
                        min_robust_accuracy=min_robust_accuracy, backend=backend.value if backend else None,
                        source=source, queries=queries)
    config.validate()
    _announce_run(model, runs_dir)
    with _progress() as progress:
        report = evaluate(config, runs_dir=runs_dir, on_progress=_attack_progress(progress))
    _say_notes(report.notes)
    payload = report.to_dict()
    if report_file is not None:
        write_json_atomic(report_file, payload)
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
    """Console-script entry point."""
    app()
