"""The speed and precision benchmarks run (in smoke mode: tiny sizes, no timing claims)."""

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_speed_benchmark_smoke(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "speed.py"), "--smoke", "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    results = json.loads(out.read_text())
    assert set(results["training"]) == {"reference-fp32", "reference-bf16", "relnet-fp32", "relnet-bf16"}
    assert all(run["median"] > 0 and run["peak_memory_mb"] > 0 for run in results["training"].values())
    assert all(value > 0 for value in results["g"]["fp32"]["achieved_gflops"])
    assert "bf16 matrix instructions" in result.stdout


def test_study_benchmark_smoke(tiny_sort_of_clevr, tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "sort_of_clevr_study.py"), "--data", str(tiny_sort_of_clevr),
                             "--out", str(tmp_path), "--smoke", "--variants", "control", "grouped-8",
                             "--eval-every", "64", "--precision", "fp32"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((tmp_path / "study.json").read_text())
    assert set(study) == {"control", "grouped-8"}
    curve = study["grouped-8"]["curves"]["binary"]
    assert len(curve) >= 2 and all(0 <= accuracy <= 1 for _, accuracy in curve)
    assert "data.questions_per_image=8" in study["grouped-8"]["command"]
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert "| grouped-8 |" in result.stdout


def test_precision_benchmark_smoke(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "precision.py"), "--out", str(tmp_path), "--smoke"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"fp32-seed0", "fp32-seed1", "bf16-seed0", "bf16-seed1"}


def test_clevr_benchmark_smoke(tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "clevr.py"), "--out", str(tmp_path), "--smoke",
                             "--workers", "1", "--presets", "clevr-state"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["runs"]) == {"clevr-state"} and summary["render_images_per_second_one_process"] > 0
    assert "Compare Numbers" in result.stdout
