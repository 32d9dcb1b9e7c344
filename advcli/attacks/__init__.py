"""Attacks on pixel-space inputs in [0, 1], under the L-inf or the L2 norm.

Every attack is a plain function ``attack(model, x, y, *, eps, ...)`` with keyword options such as
``alpha, iters, init, restarts, norm, target, clip, generator``, registered in :data:`ATTACKS`
(one file per attack in ``advcli/attacks/methods/``). :func:`resolve_attack` fills in an attack's
defaults into an :class:`AttackConfig`; :func:`run_sequence` runs several, each on the samples the
earlier ones left.
"""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "ATTACKS": ".methods",
    "AttackSpec": ".config",
    "AttackConfig": ".config",
    "resolve_attack": ".config",
    "DEFAULT_QUERIES": ".config",
    "KINDS": ".config",
    "fgsm": ".methods.fgsm",
    "bim": ".methods.bim",
    "pgd": ".methods.pgd",
    "apgd": ".methods._apgd",
    "dlr_loss": ".methods._apgd",
    "ce_loss": ".methods._apgd",
    "apgd_ce": ".methods.apgd_ce",
    "apgd_dlr": ".methods.apgd_dlr",
    "square": ".methods.square",
    "square_attack": ".methods._square",
    "auto": ".methods.auto",
    "auto_members": ".methods.auto",
    "autoattack": ".methods.autoattack",
    "autoattack_members": ".methods.autoattack",
    "fab": ".methods.fab",
    "boundary_projection": ".methods._fab",
    "run_sequence": ".sequence",
    "run_composite": ".sequence",
    "SequenceOutcome": ".sequence",
    "choose_targets": ".targets",
    "parse_target": ".targets",
    "perturb": ".core",
    "input_gradient": ".core",
    "success_score": ".core",
    "judged_scores": ".core",
    "best_of_restarts": ".core",
    "validate_attack_args": ".core",
})

__all__ = ["ATTACKS", "AttackSpec", "AttackConfig", "resolve_attack", "DEFAULT_QUERIES", "KINDS", "fgsm", "bim", "pgd",
           "apgd", "dlr_loss", "ce_loss", "apgd_ce", "apgd_dlr", "square", "square_attack", "auto", "auto_members",
           "autoattack", "autoattack_members", "fab", "boundary_projection", "run_sequence", "run_composite",
           "SequenceOutcome", "choose_targets", "parse_target", "perturb", "input_gradient", "success_score",
           "judged_scores", "best_of_restarts", "validate_attack_args"]
