"""Attacks: one file per attack, each registering an :class:`advcli.attacks.AttackSpec` under its
file's name (``apgd_ce.py`` is ``apgd-ce``).

To add an attack, add ``advcli/attacks/methods/<name>.py`` with a plain function
``attack(model, x, y, *, eps, clip, generator, norm, [target,] **options)`` on pixel inputs in
[0, 1] and one ``ATTACKS.register("<name>", AttackSpec(...))``; the command line's choices, the
defaults and the contract tests pick it up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import AttackError
from ...registry import Registry

if TYPE_CHECKING:
    from ..config import AttackSpec

ATTACKS: Registry["AttackSpec"] = Registry("attack", param="attack", package=__name__, error=AttackError,
                                           order=("fgsm", "bim", "pgd", "apgd-ce", "apgd-dlr", "fab", "square", "auto",
                                                  "autoattack"))
