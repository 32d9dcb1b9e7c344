"""The example scripts run end to end on tiny data and write what they promise."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_methods_trains_evaluates_and_records_each_method(tiny_spec, tmp_path, capsys):
    compare = _load("compare_methods")
    out = tmp_path / "table.json"
    code = compare.main(["--data", tiny_spec, "--model", "mnist-small", "--methods", "none,fgsm-rs", "--epochs", "1",
                         "--samples", "20", "--eps", "0.1", "--pgd-alpha", "0.01", "--precision", "fp32",
                         "--runs-dir", str(tmp_path / "runs"), "--json", str(out)])
    assert code == 0
    table = json.loads(out.read_text())
    assert table["model"] == "mnist-small" and table["precision"] == "fp32" and table["pgd_alpha"] == 0.01
    assert [row["method"] for row in table["rows"]] == ["none", "fgsm-rs"]
    for row in table["rows"]:
        assert row["precision"] == "fp32" and Path(row["run"]).is_dir()
        assert 0 <= row["pgd50x10"] <= row["bim20"] + 0.2 and row["pgd50x10"] <= row["clean"] <= 1
        assert row["seconds_per_epoch"] > 0
        meta = json.loads((Path(row["run"]) / "model.json").read_text())
        assert meta["architecture"] == "mnist-small"
    assert "| fgsm-rs |" in capsys.readouterr().out


def test_compare_methods_rejects_an_unknown_method(tiny_spec):
    with pytest.raises(SystemExit) as raised:
        _load("compare_methods").main(["--data", tiny_spec, "--methods", "none,fgsm-zero"])
    assert raised.value.code == 2
