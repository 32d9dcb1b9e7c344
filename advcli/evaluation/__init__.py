"""Robustness evaluation: clean and worst-case robust accuracy, curves over eps, per-class figures,
sanity checks; and crafting adversarial examples through the same engine."""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "EvalConfig": ".config",
    "Sampling": ".config",
    "Threats": ".config",
    "AttackOptions": ".config",
    "Runtime": ".config",
    "Gate": ".config",
    "parse_eps": ".config",
    "EvalReport": ".report",
    "AttackResult": ".report",
    "CurvePoint": ".report",
    "ClassResult": ".report",
    "evaluate": ".api",
    "evaluate_model": ".api",
    "load_for_evaluation": ".api",
    "check_fits_data": ".api",
    "save_curve_plot": ".api",
    "check_plot_path": ".api",
    "attack_samples": ".engine",
    "clean_predictions": ".engine",
    "CraftConfig": ".crafting",
    "CraftResult": ".crafting",
    "craft": ".crafting",
    "SANITY_CHECKS": ".sanity",
})

__all__ = ["EvalConfig", "Sampling", "Threats", "AttackOptions", "Runtime", "Gate", "parse_eps", "EvalReport",
           "AttackResult", "CurvePoint", "ClassResult", "evaluate", "evaluate_model", "load_for_evaluation",
           "check_fits_data", "save_curve_plot", "check_plot_path", "attack_samples", "clean_predictions",
           "CraftConfig", "CraftResult", "craft", "SANITY_CHECKS"]
