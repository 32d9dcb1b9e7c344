"""``advcli verify``: formal verification by bound propagation, per-sample verdicts, certified
accuracy beside the attacks' robust accuracy, curves, per-class figures and a CI gate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ...errors import AdvcliError, OutputError
from ..failures import EXIT_THRESHOLD, EXIT_USAGE, handles_errors
from ..options import (
    AttackBatchSizeOpt,
    AttackName,
    BoundMethodName,
    ChannelOrderChoice,
    ChannelOrderOpt,
    ClassNamesOpt,
    DeviceChoice,
    EvalDataOpt,
    InputRangeChoice,
    InputRangeOpt,
    IntermediateName,
    JsonOpt,
    LayoutChoice,
    LayoutOpt,
    MeanOpt,
    OutputsChoice,
    OutputsOpt,
    PrecisionChoice,
    QuietOpt,
    RunsDirOpt,
    SeedOpt,
    SplitOpt,
    StdOpt,
    contract_settings,
)
from ..progress import progress_view
from ..render import fail, print_json, render_verification, say_notes, say_warnings
from ..run_choice import announce_run


def verify_command(
    eps: str = typer.Option("0.1", "--eps", help="L-inf radius (a number or a fraction such as 2/255); a comma-separated list (0,0.01,0.05,0.1) gives a curve (the gate applies to the largest)."),
    method: BoundMethodName = typer.Option(BoundMethodName("crown"), "--method", help="Bound method: ibp (fastest, loosest), crown or alpha-crown (tightest, slowest)."),
    intermediate: Optional[IntermediateName] = typer.Option(None, "--intermediate", help="Bounds of the layers before the output for crown and alpha-crown: crown (default, tighter) or ibp (CROWN-IBP's bound, faster)."),
    alpha_steps: int = typer.Option(20, "--alpha-steps", help="alpha-crown: slope optimisation steps."),
    attack: Optional[List[AttackName]] = typer.Option(None, "--attack", help="Attacks that look for counterexamples, in order (repeat the option; default pgd, apgd-ce, apgd-dlr); the first runs before the bounds, the others on the samples left unproven."),
    bounds_only: bool = typer.Option(False, "--bounds-only", help="Run no attack: every sample the bounds do not verify is unproven (clean errors are still violated)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations of every attack (default per attack: PGD 20, APGD 100)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts of every attack."),
    per_class: bool = typer.Option(False, "--per-class", help="Add per-class clean, certified and attacked accuracy."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write certified and attacked accuracy against eps to this PNG."),
    model: Optional[str] = typer.Option(None, "--model", help="Run folder or .onnx file (default: the newest run under --runs-dir). An ONNX file is bounded through its conversion to torch, admitted when it reproduces onnxruntime on the samples; onnxruntime judges every prediction and counterexample."),
    input_range: InputRangeChoice = InputRangeOpt,
    mean: Optional[str] = MeanOpt,
    std: Optional[str] = StdOpt,
    layout: LayoutChoice = LayoutOpt,
    outputs: OutputsChoice = OutputsOpt,
    channel_order: ChannelOrderChoice = ChannelOrderOpt,
    class_names: Optional[str] = ClassNamesOpt,
    data: Optional[str] = EvalDataOpt,
    split: str = SplitOpt,
    samples: Optional[int] = typer.Option(None, "--samples", help="Verify a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = AttackBatchSizeOpt,
    device: DeviceChoice = typer.Option(DeviceChoice("auto"), "--device", help="auto (CUDA when present), cpu or cuda."),
    precision: PrecisionChoice = typer.Option(
        PrecisionChoice("auto"), "--precision",
        help="Precision of the attacks' gradients (auto: bf16 where the hardware has it natively, else fp32). "
             "Bounds are always computed in fp32, near-zero margins again in float64; every verdict is decided so."),
    min_accuracy: Optional[float] = typer.Option(None, "--min-accuracy", help="Exit 1 when clean accuracy is below this."),
    min_certified_accuracy: Optional[float] = typer.Option(None, "--min-certified-accuracy", help="Exit 1 when certified accuracy (at the largest eps) is below this."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Also write the JSON report to this file."),
    force: bool = typer.Option(False, "--force", help="Let --report and --plot replace an existing file (never a file inside a run folder)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Prove robustness by bound propagation: per sample verified, violated (a counterexample was
    found) or unproven; certified accuracy beside clean accuracy and the attacks' robust accuracy."""
    from ...evaluation.api import check_plot_path
    from ...evaluation.config import parse_eps, read_class_names
    from ...io.atomic import write_json_atomic
    from ...io.destinations import check_destination
    from ...verification.api import load_verifiable, save_certified_plot, verify
    from ...verification.config import DEFAULT_ATTACKS, VerifyConfig

    if bounds_only and attack:
        raise AdvcliError("give `attack` or `bounds_only`, not both")
    attacks = () if bounds_only else tuple(a.value for a in attack) if attack else DEFAULT_ATTACKS
    config = VerifyConfig.from_flat(dict(
        model=model, data=data, split=split, eps=parse_eps(eps), method=method.value,
        intermediate=intermediate.value if intermediate else None, alpha_steps=alpha_steps,
        attacks=attacks, iters=iters, restarts=restarts, samples=samples, seed=seed,
        batch_size=batch_size, device=device.value, precision=precision.value, min_accuracy=min_accuracy,
        min_certified_accuracy=min_certified_accuracy, per_class=per_class,
        **contract_settings(input_range, mean, std, layout, outputs, channel_order, read_class_names(class_names))))
    config.validate()
    if plot is not None:
        check_plot_path(plot)
    for path, param in ((report_file, "report"), (plot, "plot")):
        if path is not None:
            check_destination(path, param=param, force=force)
    announce_run(model, runs_dir)
    classifier = load_verifiable(config, runs_dir)
    with progress_view(quiet) as view:
        report = verify(config, classifier=classifier, on_progress=view.callback())
    say_notes(report.notes)
    say_warnings(report.warnings)
    payload = report.to_dict()
    if as_json:
        print_json(payload)
    else:
        render_verification(report)
    try:
        if report_file is not None:
            write_json_atomic(report_file, payload)
        if plot is not None:
            save_certified_plot(report, plot)
    except OutputError as error:
        fail(f"{error.message} (the results are printed {'on stdout' if as_json else 'above'})", EXIT_USAGE)
    if not report.passed:
        raise typer.Exit(EXIT_THRESHOLD)


def register(app: typer.Typer) -> None:
    app.command("verify")(handles_errors(verify_command))
