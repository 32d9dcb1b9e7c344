"""The names of a run folder's files and of the default runs folder (no torch needed to know them)."""

from pathlib import Path

RUN_FORMAT = "advcli-run"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
HISTORY_FILE = "history.csv"
LOSS_PLOT_FILE = "loss.png"
DEFAULT_RUNS_DIR = Path("runs")
