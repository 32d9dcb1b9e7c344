"""``advcli eval``: clean and robust accuracy, curves, per-class figures, sanity checks, CI gates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from ..failures import EXIT_THRESHOLD, EXIT_USAGE, handles_errors
from ..options import (
    AttackBatchSizeOpt,
    AttackName,
    BackendName,
    BackendOpt,
    ChannelOrderChoice,
    ChannelOrderOpt,
    ClassNamesOpt,
    ConvertOpt,
    DeviceChoice,
    EvalDataOpt,
    InputRangeChoice,
    InputRangeOpt,
    JsonOpt,
    LayoutChoice,
    LayoutOpt,
    MeanOpt,
    NormName,
    OutputsChoice,
    OutputsOpt,
    PrecisionChoice,
    QuietOpt,
    RunsDirOpt,
    SeedOpt,
    SourceOpt,
    SplitOpt,
    StdOpt,
    TrustPickledOpt,
    contract_settings,
)
from ..processes import TimeoutOpt, joined
from ..progress import progress_view
from ..render import fail, print_json, render_report, say_notes, say_warnings, trust_warning
from ..run_choice import announce_run

if TYPE_CHECKING:
    from ...evaluation.report import EvalReport


def eval_command(
    attack: List[AttackName] = typer.Option([AttackName("bim")], "--attack", help="Attack(s) to evaluate; repeat for several (worst case per sample). On an ONNX file, white-box attacks craft on its conversion to torch (else transfer from --source, else Square in their place) and onnxruntime judges; square queries the file itself. auto: APGD-CE, targeted APGD-DLR on the top 3 wrong classes, then Square (in the --norm); autoattack: AutoAttack's standard set (APGD-CE, APGD-T and FAB-T on 9 targets, Square with 5000 queries); each member on the samples still robust."),
    eps: str = typer.Option("0.1", "--eps", help="Radius in the --norm (a number or a fraction such as 8/255); a comma-separated list (0,0.02,0.05,0.1) gives a robustness curve (thresholds apply to the largest)."),
    norm: NormName = typer.Option(NormName("linf"), "--norm", help="Threat model: linf or l2."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step size (default per attack; BIM 0.01, APGD 2·eps to start)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations (default per attack; BIM 20, APGD 100)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts (need --init random); each runs on the samples still robust."),
    init: Optional[str] = typer.Option(None, "--init", help="zero or random start (default per attack)."),
    target: Optional[str] = typer.Option(None, "--target", help="Targeted attack towards a class index, random, least-likely or top-N (a sample still counts as non-robust when misclassified)."),
    queries: Optional[int] = typer.Option(None, "--queries", help="Square's queries per sample (square and auto: default 1000; autoattack: 5000, AutoAttack's standard)."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip adversarial images to [0, 1] (--no-clip: the reference's unclipped threat model)."),
    per_class: bool = typer.Option(False, "--per-class", help="Add per-class clean and robust accuracy."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write robust accuracy against eps to this PNG."),
    sanity_samples: int = typer.Option(100, "--sanity-samples", help="Samples for the sanity checks' extra attack runs (0 skips them)."),
    model: Optional[str] = typer.Option(None, "--model", metavar="RUN|FILE", help="Run folder or any .onnx file; TorchScript or torch.export files with --trust-pickled-model (default: the newest run under --runs-dir)."),
    backend: Optional[BackendName] = BackendOpt,
    source: Optional[str] = SourceOpt,
    input_range: InputRangeChoice = InputRangeOpt,
    mean: Optional[str] = MeanOpt,
    std: Optional[str] = StdOpt,
    layout: LayoutChoice = LayoutOpt,
    outputs: OutputsChoice = OutputsOpt,
    channel_order: ChannelOrderChoice = ChannelOrderOpt,
    class_names: Optional[str] = ClassNamesOpt,
    convert: bool = ConvertOpt,
    trust_pickled_model: bool = TrustPickledOpt,
    data: Optional[str] = EvalDataOpt,
    split: str = SplitOpt,
    samples: Optional[int] = typer.Option(None, "--samples", help="Evaluate a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = AttackBatchSizeOpt,
    device: DeviceChoice = typer.Option(DeviceChoice("auto"), "--device", help="auto (CUDA when present), cpu or cuda; for ONNX files the onnxruntime execution provider too."),
    precision: PrecisionChoice = typer.Option(
        PrecisionChoice("auto"), "--precision",
        help="Precision of white-box attack gradients: auto (bf16 where the hardware has it natively, else fp32), "
             "fp32, bf16 or fp16 (CUDA). Reported accuracies are always classified in fp32; black-box queries run "
             "in fp32; for an ONNX file it applies to the torch model that crafts (its conversion or a transfer "
             "source)."),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Exit 1 when clean accuracy is below this."),
    min_robust_accuracy: Optional[float] = typer.Option(None, "--min-robust-accuracy", help="Exit 1 when robust accuracy is below this."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Also write the JSON report to this file."),
    force: bool = typer.Option(False, "--force", help="Let --report and --plot replace an existing file (never a file inside a run folder)."),
    runs_dir: Path = RunsDirOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Clean and robust accuracy (worst case per sample over the attacks), curves over eps,
    per-class figures and sanity checks; thresholds for CI gates. Under torchrun the processes share
    the attacks; rank 0 reports, and every process exits with the same code."""
    from ...evaluation.api import check_plot_path, evaluate
    from ...evaluation.config import EvalConfig, parse_eps, read_class_names
    from ...io.destinations import check_destination
    from ...runtime.coordination import main_decides
    from ...runtime.distributed import agree

    config = EvalConfig.from_flat(dict(
        model=model, data=data, split=split, attacks=tuple(a.value for a in attack), eps=parse_eps(eps), alpha=alpha,
        iters=iters, restarts=restarts, init=init, clip=clip, samples=samples, seed=seed, batch_size=batch_size,
        device=device.value, min_accuracy=min_accuracy, min_robust_accuracy=min_robust_accuracy, norm=norm.value,
        target=target, queries=queries, per_class=per_class, sanity_samples=sanity_samples,
        backend=backend.value if backend else None, source=source, precision=precision.value, convert=convert,
        trust_pickled_model=trust_pickled_model,
        **contract_settings(input_range, mean, std, layout, outputs, channel_order, read_class_names(class_names))))
    config.validate()
    if plot is not None:
        check_plot_path(plot)
    for path, param in ((report_file, "report"), (plot, "plot")):
        if path is not None:
            check_destination(path, param=param, force=force)
    with joined(device.value, timeout) as context:
        if context.is_main:
            announce_run(model, runs_dir)
            if trust_pickled_model:
                trust_warning(model)
        with progress_view(quiet or not context.is_main) as view:
            report = evaluate(config, runs_dir=runs_dir, on_progress=view.callback(), context=context)
        main_decides(lambda: _show(report, report_file, plot, as_json), context)
        failed = agree(not report.passed, context)
    if failed:
        raise typer.Exit(EXIT_THRESHOLD)


def _show(report: "EvalReport", report_file: Optional[Path], plot: Optional[Path], as_json: bool) -> None:
    """Notes, warnings, the report (table or JSON) and the files asked for."""
    say_notes(report.notes)
    say_warnings(report.warnings)
    payload = report.to_dict()
    if as_json:
        print_json(payload)
    else:
        render_report(report)
    _write_outputs(report, payload, report_file, plot, as_json)


def _write_outputs(report: "EvalReport", payload: dict, report_file: Optional[Path], plot: Optional[Path],
                   as_json: bool) -> None:
    """Write the report file and the plot; a failure (a full disk) is one error line that says the
    results were printed all the same."""
    from ...errors import OutputError
    from ...evaluation.api import save_curve_plot
    from ...io.atomic import write_json_atomic

    try:
        if report_file is not None:
            write_json_atomic(report_file, payload)
        if plot is not None:
            save_curve_plot(report, plot)
    except OutputError as error:
        fail(f"{error.message} (the results are printed {'on stdout' if as_json else 'above'})", EXIT_USAGE)


def register(app: typer.Typer) -> None:
    app.command("eval")(handles_errors(eval_command))
