"""The adversarial-example section: for each example its true label, both predictions (and the
target), the clean image beside the adversarial one, and the perturbation magnified."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from .document import ExampleCard, ExampleGrid, Paragraph, Section
from .figures import example_pngs, magnification
from .inputs import Examples, check_examples

MAX_EXAMPLES = 16


def _name(classes: Sequence[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def _card(examples: Examples, row: int, classes: Sequence[str], factor: int) -> ExampleCard:
    label = int(examples.labels[row])
    clean, adversarial = int(examples.clean_predictions[row]), int(examples.adversarial_predictions[row])
    target = int(examples.targets[row]) if examples.targets is not None else -1
    images = example_pngs(examples.originals[row], examples.adversarials[row], factor)
    return ExampleCard(
        index=int(examples.indices[row]), true_label=_name(classes, label),
        clean_prediction=_name(classes, clean), adversarial_prediction=_name(classes, adversarial),
        clean_correct=clean == label, adversarial_correct=adversarial == label,
        clean_png=images[0], adversarial_png=images[1], perturbation_png=images[2], strip_png=images[3],
        perturbation=float(np.max(np.abs(examples.adversarials[row] - examples.originals[row]))),
        target=_name(classes, target) if target >= 0 else None,
        target_reached=(adversarial == target) if target >= 0 and target != label else None,
    )


def _attack_text(meta: Mapping[str, Any]) -> str:
    attack = meta.get("attack") if isinstance(meta.get("attack"), Mapping) else {}
    if not attack:
        return "an attack not recorded in the file"
    text = f"{attack.get('name', '?')} at eps {attack.get('eps', '?')} ({attack.get('norm', '?')})"
    return text + (f", targeted at {attack['target']}" if attack.get("target") is not None else "")


def examples_section(arrays: Mapping[str, Any], classes: Sequence[str], *,
                     limit: int = MAX_EXAMPLES) -> Optional[Section]:
    """Up to `limit` examples in file order; None when the file holds none."""
    examples = check_examples(arrays, max(len(classes), 1))
    count = len(examples.labels)
    if count == 0:
        return None
    shown = min(count, limit)
    factor = magnification(examples.adversarials[:shown] - examples.originals[:shown])
    cards = [_card(examples, row, classes, factor) for row in range(shown)]
    fooled = int(np.sum((examples.clean_predictions == examples.labels) & (examples.adversarial_predictions != examples.labels)))
    which = f"All {count} examples" if shown == count else f"The first {shown} of {count} examples"
    caption = (f"{which} from {_attack_text(examples.meta)}. Each shows the clean image, "
               f"the adversarial one and the perturbation magnified {factor}× (grey: no change; lighter: brighter).")
    summary = (f"Of all {count} examples, {fooled} were classified correctly before the attack and wrongly after it; "
               f"✓ marks a prediction equal to the true label, ✗ one that differs.")
    return Section("examples", "Adversarial examples", [ExampleGrid(cards, factor, caption), Paragraph(summary)])
