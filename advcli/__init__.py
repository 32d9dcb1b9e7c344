"""advcli: train image classifiers robust to adversarial examples, attack them, measure them honestly."""

__version__ = "0.1.0"

from .attacks import ATTACKS, AttackConfig, bim, fgsm, pgd, resolve_attack  # noqa: E402
from .square import square_attack  # noqa: E402
from .apgd import apgd  # noqa: E402
from .autoattack import auto  # noqa: E402
from .crafting import CraftConfig, craft  # noqa: E402
from .data import Dataset, load_dataset  # noqa: E402
from .errors import AdvcliError, AttackError, CheckpointError, DataError  # noqa: E402
from .evaluation import EvalConfig, EvalReport, evaluate, evaluate_model  # noqa: E402
from .backends import load_classifier  # noqa: E402
from .export import check_parity, export_onnx  # noqa: E402
from .models import MODELS, build_model  # noqa: E402
from .runs import Run, find_latest_run, load_run  # noqa: E402
from .training import TRAINING_METHODS, TrainConfig, resume_training, robust_train, train, train_model  # noqa: E402

__all__ = [
    "ATTACKS", "AttackConfig", "bim", "fgsm", "pgd", "resolve_attack", "square_attack", "apgd", "auto",
    "CraftConfig", "craft", "Dataset", "load_dataset",
    "AdvcliError", "AttackError", "CheckpointError", "DataError",
    "EvalConfig", "EvalReport", "evaluate", "evaluate_model", "load_classifier", "check_parity", "export_onnx",
    "MODELS", "build_model",
    "Run", "find_latest_run", "load_run",
    "TRAINING_METHODS", "TrainConfig", "resume_training", "robust_train", "train", "train_model",
]
