"""``advcli attack``: adversarial examples for a split, saved with a picture of the predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..escaping import shown
from ..failures import handles_errors
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
    DeviceOpt,
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
    PrecisionOpt,
    QueriesOpt,
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
from ..render import err, precision_note, print_json, say_notes, say_warnings, trust_warning
from ..run_choice import announce_run


def attack_command(
    attack: AttackName = typer.Option(AttackName("bim"), "--attack", help="Attack to run."),
    eps: str = typer.Option("0.1", "--eps", help="Radius in the --norm (a number or a fraction such as 8/255)."),
    norm: NormName = typer.Option(NormName("linf"), "--norm", help="Threat model: linf or l2."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="Step size (default per attack; BIM 0.01)."),
    iters: Optional[int] = typer.Option(None, "--iters", help="Iterations (default per attack; BIM 20)."),
    restarts: int = typer.Option(1, "--restarts", help="Random restarts (need --init random)."),
    init: Optional[str] = typer.Option(None, "--init", help="zero or random start (default per attack)."),
    target: Optional[str] = typer.Option(None, "--target", help="Targeted attack towards a class index, random, least-likely or top-N; the targets are saved too."),
    clip: bool = typer.Option(True, "--clip/--no-clip", help="Clip adversarial images to [0, 1] (--no-clip: the reference's unclipped threat model)."),
    model: Optional[str] = typer.Option(None, "--model", help="Run folder or any .onnx file; TorchScript or torch.export files with --trust-pickled-model (default: the newest run under --runs-dir)."),
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
    samples: Optional[int] = typer.Option(None, "--samples", help="Attack a seeded random subset of this size."),
    seed: int = SeedOpt,
    batch_size: int = AttackBatchSizeOpt,
    device: DeviceChoice = DeviceOpt,
    precision: PrecisionChoice = PrecisionOpt,
    queries: Optional[int] = QueriesOpt,
    out_file: Optional[str] = typer.Option(None, "--out", help="Output .npz (default: <run>/attacks/<attack>[-l2]-eps<eps>[-to-<target>]-<split>.npz; for a file, attacks/<file stem>-... beside it)."),
    grid: Optional[str] = typer.Option(None, "--grid", help="PNG grid of 16 adversarial images with predictions (default: beside --out)."),
    runs_dir: Path = RunsDirOpt,
    timeout: float = TimeoutOpt,
    as_json: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Craft adversarial examples and save them with a picture of the model's predictions (under
    torchrun, the processes share the samples and rank 0 saves)."""
    from ...evaluation.config import parse_eps, read_class_names
    from ...evaluation.crafting import CraftConfig, craft

    config = CraftConfig.from_flat(dict(
        model=model, data=data, split=split, attack=attack.value, eps=parse_eps(eps), alpha=alpha, iters=iters,
        restarts=restarts, init=init, clip=clip, samples=samples, seed=seed, batch_size=batch_size,
        device=device.value, precision=precision.value, queries=queries, norm=norm.value, target=target,
        out=out_file, grid=grid, backend=backend.value if backend else None, source=source, convert=convert,
        trust_pickled_model=trust_pickled_model,
        **contract_settings(input_range, mean, std, layout, outputs, channel_order, read_class_names(class_names))))
    config.validate()
    with joined(device.value, timeout) as context:
        if context.is_main:
            announce_run(model, runs_dir)
            if trust_pickled_model:
                trust_warning(model)
        with progress_view(quiet or not context.is_main) as view:
            result = craft(config, runs_dir=runs_dir, on_progress=view.callback(), context=context)
    if not context.is_main:
        return
    say_notes(result.notes)
    say_warnings(result.warnings)
    if as_json:
        print_json(result.to_dict())
        return
    err.print(f"saved {result.samples} adversarial examples to [bold]{shown(result.path)}[/] and a grid to "
              f"[bold]{shown(result.grid)}[/]", highlight=False)
    err.print(f"accuracy: clean {result.clean_accuracy:.4f}, adversarial {result.adversarial_accuracy:.4f} "
              f"({precision_note(result.precision)})", highlight=False)
    if result.target_hit_rate is not None:
        err.print(f"target {result.attack['target']} reached on {result.target_hit_rate:.4f} of the samples aimed at it"
                  + (f" ({result.untargetable} already of that class, left as they were)" if result.untargetable else ""),
                  highlight=False)


def register(app: typer.Typer) -> None:
    app.command("attack")(handles_errors(attack_command))
