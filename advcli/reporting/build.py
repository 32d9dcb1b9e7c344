"""A report's content from its inputs: the model card, training, results and examples sections."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .card import headlines, model_card, training_section
from .document import Notice, Report, Section
from .examples import MAX_EXAMPLES, examples_section
from .inputs import ReportInputs, check_model, check_verification, consistency_notes
from .results import sections as result_sections


def _title(inputs: ReportInputs) -> tuple[str, str]:
    model = inputs.model
    name = Path(str(inputs.evaluation.get("model", ""))).name if inputs.evaluation else ""
    title = inputs.title or f"advcli report: {name or model.get('architecture', 'model')}"
    data = model.get("data", {}).get("spec", "?") if isinstance(model.get("data"), dict) else "?"
    method = (model.get("training") or {}).get("method", "?")
    kind = "standard training" if method == "none" else f"{method} adversarial training"
    return title, f"{model.get('architecture', '?')} trained on {data} with {kind}"


def build_report(inputs: ReportInputs, *, max_examples: int = MAX_EXAMPLES) -> Report:
    """The report's content, checked: results of other weights and malformed figures raise AdvcliError."""
    check_model(inputs.model)
    notes = consistency_notes(inputs)
    verification = check_verification(inputs.verification) if inputs.verification is not None else None
    card = model_card(inputs)
    card.blocks += [Notice(note) for note in notes]
    if inputs.evaluation is None:
        card.blocks.append(Notice("No evaluation was given, so this report shows no robustness figure; "
                                  "advcli eval --report FILE.json writes one to include."))
    sections: list[Optional[Section]] = [card, training_section(inputs),
                                         *result_sections(inputs.evaluation, verification)]
    if inputs.examples is not None:
        sections.append(examples_section(inputs.examples, inputs.classes, limit=max_examples))
    title, subtitle = _title(inputs)
    return Report(title, subtitle, headlines(inputs, verification), [s for s in sections if s is not None])
