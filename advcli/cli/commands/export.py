"""``advcli export``: an ONNX file, checked by onnx.checker and by logit parity under onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..escaping import shown
from ..failures import handles_errors
from ..options import JsonOpt, ModelRunOpt, RunsDirOpt
from ..render import err, print_json
from ..run_choice import announce_run


def export_command(
    model: Optional[str] = ModelRunOpt,
    out_file: Optional[Path] = typer.Option(None, "--out", help="ONNX file to write (default: <run>/model.onnx)."),
    opset: int = typer.Option(18, "--opset", help="ONNX opset version."),
    parity_samples: int = typer.Option(256, "--parity-samples", help="Test inputs on which onnxruntime must reproduce the checkpoint's logits."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Export a run to ONNX, verified by onnx.checker and logit parity under onnxruntime."""
    from ...export.to_onnx import export_onnx
    from ...io.runs import load_run

    path = announce_run(model, runs_dir)
    run = load_run(path)
    result = export_onnx(run, out_file or run.path / "model.onnx", opset=opset, parity_samples=parity_samples)
    if as_json:
        print_json(result.to_dict())
        return
    err.print(f"exported [bold]{shown(result.path)}[/] (opset {result.opset}); parity on {result.parity_samples} "
              f"samples: max |diff| {result.max_abs_diff:.2e}, argmax agreement {result.argmax_agreement:.4f} "
              f"(saved to {shown(result.parity_file)})", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("export")(handles_errors(export_command))
