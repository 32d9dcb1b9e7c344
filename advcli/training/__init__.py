"""Standard, adversarial and (by registered methods) other training of registered models, with a
seeded, repeatable, resumable loop guarded against catastrophic overfitting."""

from .._lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "TrainConfig": ".config",
    "Optimization": ".config",
    "Adversary": ".config",
    "GuardSettings": ".config",
    "StepSettings": ".config",
    "METHODS": ".methods",
    "TrainingMethodSpec": ".methods",
    "OPTIMIZERS": ".optimizers",
    "LR_SCHEDULES": ".optimizers",
    "ON_COLLAPSE": ".collapse",
    "CollapseGuard": ".guard",
    "ValidationResult": ".guard",
    "split_validation": ".guard",
    "pgd_validation": ".guard",
    "TrainProgress": ".monitor",
    "TrainResult": ".monitor",
    "train_model": ".loop",
    "robust_validation": ".loop",
    "accuracy": ".loop",
    "load_resume": ".checkpoint",
    "train": ".api",
    "robust_train": ".api",
    "resume_training": ".api",
    "resumed_run_path": ".api",
    "save_training": ".api",
    "run_metadata": ".api",
})

__all__ = ["TrainConfig", "Optimization", "Adversary", "GuardSettings", "StepSettings", "METHODS",
           "TrainingMethodSpec", "OPTIMIZERS", "LR_SCHEDULES", "ON_COLLAPSE", "CollapseGuard", "ValidationResult",
           "split_validation", "pgd_validation", "TrainProgress", "TrainResult", "train_model", "robust_validation",
           "accuracy", "load_resume", "train", "robust_train", "resume_training", "resumed_run_path", "save_training",
           "run_metadata"]
