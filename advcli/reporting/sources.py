"""What a report is about, found on disk: a run folder, or an exported ONNX file traced back to the run
it was exported from (its metadata names the run and the fingerprint of its weights)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from ..errors import AdvcliError
from ..io.runs import DEFAULT_RUNS_DIR, resolve_run_path
from .inputs import ReportInputs, load_report_inputs

REPORT_FILE = "report.html"


def report_inputs(
    target: Optional[Path | str] = None,
    *,
    runs_dir: Path | str = DEFAULT_RUNS_DIR,
    evaluation: Optional[Path | str] = None,
    examples: Optional[Path | str] = None,
    verification: Optional[Path | str] = None,
    title: Optional[str] = None,
    source: Optional[Path | str] = None,
) -> tuple[ReportInputs, Path]:
    """The inputs of a report on `target` (a run folder, an exported ``.onnx`` file, or None for the
    newest run under `runs_dir`) and where its HTML goes by default: ``<run>/report.html``, or
    ``<file>.report.html`` beside an ONNX file, whose model card and training come from `source` or
    else the run its metadata names. Nothing is evaluated: the report shows what the run and the
    given files hold."""
    if target is not None and Path(target).suffix.lower() == ".onnx":
        return _exported(Path(target), source, evaluation=evaluation, examples=examples,
                         verification=verification, title=title)
    run, _ = resolve_run_path(target, runs_dir)
    if not run.is_dir():
        raise AdvcliError(f"{run}: no such run folder (give a run folder or an exported .onnx file)")
    inputs = load_report_inputs(run, evaluation=evaluation, verification=verification, examples=examples,
                                title=title)
    return inputs, run / REPORT_FILE


def _exported(path: Path, source_run: Optional[Path | str], **files: Optional[Path | str]
              ) -> tuple[ReportInputs, Path]:
    """A report on an ONNX file: the model card and training of its source run."""
    import torch

    from ..runtime.backends.onnxruntime import load_onnx_classifier, load_transfer_source

    classifier = load_onnx_classifier(path, "cpu")
    claimed = classifier.metadata.get("advcli.source_fingerprint")
    if not claimed:
        raise AdvcliError(f"{path} names no source run in its metadata; a report describes the run a file was "
                          "exported from (export it with advcli)")
    source = load_transfer_source(classifier, source_run, torch.device("cpu"))
    if source.fingerprint != claimed:
        raise AdvcliError(f"{path} was exported from weights {claimed[:19]}…, not those of {source.path} "
                          f"({source.fingerprint[:19]}…)", param="source")
    title = files.pop("title") or f"advcli report: {path.name}"
    inputs = load_report_inputs(source.path, title=str(title), **files)  # type: ignore[arg-type]
    exported = {"path": str(path), "fingerprint": classifier.fingerprint}
    return dataclasses.replace(inputs, exported=exported), path.with_name(f"{path.stem}.{REPORT_FILE}")
