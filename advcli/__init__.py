"""advcli: train image classifiers robust to adversarial examples, attack them, measure them honestly.

The public API: training (:func:`train`, :func:`robust_train`, :func:`resume_training`), attacks
(:func:`fgsm`, :func:`bim`, :func:`pgd`, :func:`apgd`, :func:`square_attack`, :func:`auto`),
evaluation (:func:`evaluate`, :func:`evaluate_model`, :func:`craft`; of runs, ONNX files and any
``torch.nn.Module`` behind an :class:`InputContract`), formal verification (:func:`verify`,
:func:`verify_model`), export (:func:`export_onnx`),
data (:func:`load_dataset`) and runs (:func:`load_run`). Names are imported when first used, so
``import advcli`` is quick and loads torch only once a name that needs it is touched.
"""

from ._compat import install_moved_module_aliases
from ._lazy import lazy_exports
from ._version import __version__

_EXPORTS = {
    "AdvcliError": ".errors", "AttackError": ".errors", "CheckpointError": ".errors", "DataError": ".errors",
    "DistributedError": ".errors",
    "OutputError": ".errors",
    "ThreatModel": ".threat", "Registry": ".registry",
    "ATTACKS": ".attacks", "AttackConfig": ".attacks", "resolve_attack": ".attacks", "fgsm": ".attacks",
    "bim": ".attacks", "pgd": ".attacks", "apgd": ".attacks", "square_attack": ".attacks", "auto": ".attacks",
    "Dataset": ".data", "load_dataset": ".data", "FORMATS": ".data",
    "MODELS": ".models", "build_model": ".models",
    "Run": ".io.runs", "find_latest_run": ".io.runs", "load_run": ".io.runs",
    "load_classifier": ".runtime", "InputContract": ".runtime.onnx_import",
    "EvalConfig": ".evaluation", "EvalReport": ".evaluation", "evaluate": ".evaluation",
    "evaluate_model": ".evaluation", "CraftConfig": ".evaluation", "craft": ".evaluation",
    "check_parity": ".export", "export_onnx": ".export",
    "TrainConfig": ".training", "train": ".training", "robust_train": ".training", "train_model": ".training",
    "resume_training": ".training",
    "VerifyConfig": ".verification", "VerifyReport": ".verification", "verify": ".verification",
    "verify_model": ".verification", "BOUND_METHODS": ".verification",
}

_ALIASES = {"TRAINING_METHODS": ("METHODS", ".training")}

_lazy_getattr, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str):
    if name in _ALIASES:  # a public name kept for code written before the registries were unified
        attribute, module = _ALIASES[name]
        from importlib import import_module

        return getattr(import_module(module, __name__), attribute)
    return _lazy_getattr(name)


install_moved_module_aliases()

__all__ = ["__version__", *_EXPORTS, *_ALIASES]
