"""The speed and precision benchmarks run (in smoke mode: tiny sizes, no timing claims)."""

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
                             "--out", str(tmp_path), "--smoke", "--variants", "control", "coord-conv",
                             "--eval-every", "64", "--precision", "fp32"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((tmp_path / "study.json").read_text())
    assert set(study) == {"control", "coord-conv"}
    curve = study["coord-conv"]["curves"]["binary"]
    assert len(curve) >= 2 and all(0 <= accuracy <= 1 and seconds > 0 for _, seconds, accuracy in curve)
    assert "model.coord_conv=true" in study["coord-conv"]["command"]
    assert "model.dropout=0.5" in study["control"]["command"]  # the public recipe
    assert set(study["control"]["crossings"]) == {"non_relational >= 99%", "binary >= 85%", "binary >= 90%",
                                                  "binary >= 95%"}
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"
    assert "| coord-conv |" in result.stdout
    # Summarized again from the runs on disk, nothing trained: the same table.
    again = subprocess.run([sys.executable, str(BENCHMARKS / "sort_of_clevr_study.py"), "--data", str(tiny_sort_of_clevr),
                            "--out", str(tmp_path), "--smoke", "--variants", "control", "coord-conv", "--no-train",
                            "--eval-every", "64", "--precision", "fp32"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [line for line in again.stdout.splitlines() if line.startswith("|")] == \
        [line for line in result.stdout.splitlines() if line.startswith("|")]


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


def test_gpu_script_smoke_runs_every_stage(tmp_path):
    """benchmarks/gpu.py at tiny sizes on this machine: every stage runs, so the GPU run cannot fail on a typo."""
    from relnet.tasks import PRESETS

    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--smoke", "--out", str(tmp_path),
                             "--workers", "2"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    stages = report["stages"]
    assert list(stages) == ["environment", "tests", "throughput", "reference", "torchrun", "sort-of-clevr", "clevr"]
    assert all(entry["status"] == "ok" for entry in stages.values()), {k: v["status"] for k, v in stages.items()}
    assert stages["environment"]["result"]["torch"]
    assert stages["tests"]["result"]["counts"].get("skipped", 0) + stages["tests"]["result"]["counts"].get("passed", 0) > 0
    rows = stages["throughput"]["result"]["configurations"]
    assert {(row["preset"], row["precision"]) for row in rows if not row["compile"]} == \
        {(name, precision) for name in PRESETS for precision in ("fp32", "bf16")}
    assert any(row["compile"] for row in rows)
    assert all(row["samples_per_second"] > 0 for row in rows), [row for row in rows if "error" in row]
    reference = stages["reference"]["result"]
    assert reference["training"]["relnet-bf16"]["vs_reference"] > 0
    assert all(row["g_tflops"] > 0 and row["matmul_tflops"] > 0 for row in reference["g_bf16"].values())
    assert stages["torchrun"]["result"]["backend"] == "gloo"
    soc = stages["sort-of-clevr"]["result"]
    assert soc["curve"] and set(soc["time_to_accuracy"]) == {"non_relational >= 90%", "non_relational >= 99%",
                                                            "binary >= 90%", "binary >= 95%"}
    assert stages["clevr"]["result"]["final"]["questions_seen"] > 0
    assert "samples/s" in result.stdout and (tmp_path / "logs" / "clevr.log").stat().st_size > 0


def test_gpu_script_reports_a_failing_stage_and_stops_an_overrunning_one(tmp_path):
    import argparse
    import time

    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("the failing stage is --device cuda on a machine without one")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu.py"), "--out", str(tmp_path / "fail"), "--device",
                             "cuda", "--stages", "environment", "--total-seconds", "60"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "not ok: environment" in result.stdout
    entry = json.loads((tmp_path / "fail" / "gpu.json").read_text())["stages"]["environment"]
    assert entry["status"].startswith("failed") and "Error" in entry["log_tail"]

    sys.path.insert(0, str(BENCHMARKS))
    import gpu

    out = tmp_path / "slow"
    for folder in ("logs", "stages", "runs"):
        (out / folder).mkdir(parents=True)
    args = argparse.Namespace(out=str(out), work=str(tmp_path / "work"), device="cpu", workers=1, smoke=True)
    start = time.perf_counter()
    entry = gpu.launch("clevr", args, seconds=3.0)  # rendering and training take longer than 3 s
    assert entry["status"] == "stopped at its limit of 3 s"
    assert time.perf_counter() - start < 25


def test_clevr_state_study_smoke(tmp_path):
    from relnet.cli import main
    for split, images in (("train", "6"), ("val", "3")):
        assert main(["data", "clevr-gen", "--out", str(tmp_path / "data"), "--split", split, "--images", images,
                     "--no-images", "--workers", "1", "--no-progress"]) == 0
    assert main(["data", "clevr", "--clevr-dir", str(tmp_path / "data"), "--out", str(tmp_path / "cache"),
                 "--no-images", "--no-progress"]) == 0
    result = subprocess.run([sys.executable, str(BENCHMARKS / "clevr_state_study.py"), "--data", str(tmp_path / "cache"),
                             "--out", str(tmp_path / "study"), "--smoke", "--variants", "small", "small-no-warmup"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert set(study) == {"small", "small-no-warmup"}
    assert all(row["curve"] and row["questions_seen"] == 60 for row in study.values())
    assert "warmup_steps=0" in study["small-no-warmup"]["sets"] and "| small-no-warmup |" in result.stdout
    assert (tmp_path / "study" / "study.png").read_bytes()[:4] == b"\x89PNG"


SHARED_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "clevr-real-sample"


@pytest.mark.skipif(not SHARED_SAMPLE.is_dir(), reason="needs the real CLEVR sample in ../shared/data")
def test_clevr_crops_smoke(tmp_path):
    out = tmp_path / "crops.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "clevr_crops.py"), "--scenes", "20", "--epochs", "1",
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads(out.read_text())
    assert results["real"]["objects"] == 145 and 0 <= results["real"]["all_four"] <= 1


def test_clevr_gen_memory_benchmark_smoke(tmp_path):
    out = tmp_path / "memory.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "clevr_gen_memory.py"), "--smoke", "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [row["scenes"] for row in rows] == [5, 20]
    assert all(row["peak_rss_mb"] > 10 and row["questions_file_mb"] > 0 for row in rows)
    assert "| 20 |" in result.stdout


def test_state_step_benchmark_smoke(small_datasets, tmp_path):
    out = tmp_path / "step.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "state_step.py"), "--data", str(small_datasets["clevr"]),
                             "--smoke", "--precision", "fp32", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["questions_per_second"]) == {"now", "real-pairs", "before"}
    assert all(rate > 0 for rate in report["questions_per_second"].values()) and report["profile_top"]


def test_babi_probes_smoke(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from common import write_synthetic_babi

    write_synthetic_babi(tmp_path / "babi")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "babi_probes.py"), "--data", str(tmp_path / "babi"),
                             "--out", str(tmp_path / "probes"), "--smoke", "--probes", "t16", "t19-wide",
                             "--eval-every", "32", "--precision", "fp32"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    probes = json.loads((tmp_path / "probes" / "probes.json").read_text())
    assert set(probes) == {"t16", "t19-wide"} and probes["t19-wide"]["task"] == 19
    assert "data.tasks=[19]" in probes["t19-wide"]["command"] and "model.sentence_dim=64" in probes["t19-wide"]["command"]
    assert all(row["curve"] and 0 <= row["final"] <= row["best"] <= 1 for row in probes.values())
    assert "| t19-wide | 19 |" in result.stdout


def test_lstm_groups_benchmark_smoke(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    from common import write_synthetic_babi

    write_synthetic_babi(tmp_path / "babi")
    out = tmp_path / "groups.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "lstm_groups.py"), "--data", str(tmp_path / "babi"),
                             "--set", "data.tasks=[1,19]", "--smoke", "--precision", "fp32", "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["questions_per_second"]) == {"length-groups", "one-run", "packed"}
    assert all(rate > 0 for rate in report["questions_per_second"].values()) and report["shapes"]["story"][0] == 64


def test_step_speed_benchmark_smoke(small_datasets, tmp_path):
    out = tmp_path / "speed.json"
    data, copy = small_datasets["clevr"], tmp_path / "copy"
    shutil.copytree(data, copy)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "step_speed.py"), "--data", str(data), str(copy),
                             "--presets", "clevr-small-question", "clevr-small-pixels", "--smoke", "--precision", "fp32",
                             "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    rates = json.loads(out.read_text())["questions_per_second"]
    # clevr-small-pixels is sized for 80-pixel images and measured on these 128-pixel caches as they are.
    assert set(rates) == {f"{preset} @ {name}" for preset in ("clevr-small-question", "clevr-small-pixels")
                          for name in ("clevr", "copy")} and all(r > 0 for r in rates.values())
    twice = subprocess.run([sys.executable, str(BENCHMARKS / "step_speed.py"), "--data", str(data), str(data),
                            "--presets", "clevr-state", "--smoke"], capture_output=True, text=True)
    assert twice.returncode != 0 and "each preset and each data directory once" in twice.stderr


def test_clevr_small_benchmark_smoke_resumes_only_unfinished_runs(tmp_path):
    command = [sys.executable, str(BENCHMARKS / "clevr_small.py"), "--out", str(tmp_path), "--smoke", "--precision",
               "fp32", "--presets", "clevr-small-pixels", "clevr-small-question"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == {"clevr-small-pixels", "clevr-small-question"}
    assert all(row["state"] == "finished" and row["curve"] and set(row["by_category"]) >= {"overall"}
               for row in summary.values())
    assert json.loads((tmp_path / "data" / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"][0]["objects"]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG" and "| clevr-small-question |" in result.stdout
    again = subprocess.run(command, capture_output=True, text=True)  # finished runs are not trained again
    assert again.returncode == 0 and "$ -m relnet.cli train" not in again.stdout
    # A call for one preset (two such calls run side by side) still writes every run's row.
    one = subprocess.run([*command[:-2], "clevr-small-question", "--no-train"], capture_output=True, text=True)
    assert one.returncode == 0 and set(json.loads((tmp_path / "summary.json").read_text())) == set(summary)
    # A run stopped at a slice's end (one sitting of a longer horizon) is resumed at the next sitting, its log kept.
    question = tmp_path / "clevr-small-question"
    shutil.rmtree(question)
    subprocess.run([sys.executable, "-m", "relnet.cli", "train", "--preset", "clevr-small-question", "--data",
                    str(tmp_path / "cache"), "--out", str(question), "--epochs", "3", "--slice-minutes", "1e-9",
                    "--no-progress", "--precision", "fp32"], capture_output=True, check=True)
    log = (tmp_path / "clevr-small-question.log").read_text()
    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trained = [line for line in resumed.stdout.splitlines() if line.startswith("$ -m relnet.cli train")]
    assert len(trained) == 1 and "clevr-small-question" in trained[0] and trained[0].endswith("--resume")
    assert (tmp_path / "clevr-small-question.log").read_text().startswith(log)


def test_batch_norm_recompute_benchmark_smoke(tiny_sort_of_clevr, tmp_path):
    from relnet.cli import main

    assert main(["train", "--preset", "sort-of-clevr-pixels", "--data", str(tiny_sort_of_clevr), "--out",
                 str(tmp_path / "run"), "--epochs", "1", "--no-progress", "--precision", "fp32",
                 "--set", "model.g_widths=[8]", "--set", "model.f_widths=[8]"]) == 0
    out = tmp_path / "bn.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "batch_norm_recompute.py"), str(tmp_path / "run"),
                             "--data", str(tiny_sort_of_clevr), "--smoke", "--precision", "fp32", "--json", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report) == {"questions", "running averages", "recomputed over 8 (seed 1)", "recomputed over 8 (seed 2)"}
    assert all(0 <= row["binary"] <= 1 for key, row in report.items() if key != "questions")


def test_side_by_side_goes_on_past_a_run_stopped_by_a_signal_and_stops_at_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from common import INTERRUPTED, run_side_by_side

    def writes_after(seconds: float, name: str) -> list[str]:
        return [sys.executable, "-c", f"import time; time.sleep({seconds}); open({str(tmp_path / name)!r}, 'w')"]

    stopped = [sys.executable, "-c", f"raise SystemExit({INTERRUPTED})"]
    run_side_by_side({"stopped": stopped, "goes-on": writes_after(1.5, "done")}, tmp_path, 2, resume=False)
    assert (tmp_path / "done").exists() and "stopped stopped by a signal" in capsys.readouterr().out
    failed = [sys.executable, "-c", "raise SystemExit(3)"]
    with pytest.raises(SystemExit, match="failed failed \\(exit 3\\)"):
        run_side_by_side({"failed": failed, "cut": writes_after(30, "never")}, tmp_path, 2, resume=False)
    assert not (tmp_path / "never").exists()


TASK16_STORY = """1 Lily is a frog.
2 Bernhard is a frog.
3 Bernhard is green.
4 Brian is a lion.
5 Brian is white.
6 Julius is a swan.
7 Julius is green.
8 Lily is yellow.
9 Greg is a swan.
10 What color is Greg?\tgreen\t9 6 7
1 Lily is a frog.
2 Greg is a frog.
3 Greg is gray.
4 Brian is a frog.
5 Brian is white.
6 Julius is a swan.
7 Julius is white.
8 Bernhard is a swan.
9 Bernhard is white.
10 What color is Lily?\twhite\t1 4 5
"""


def test_babi_task16_rules_and_report(tmp_path):
    """The induction rule answers both stories (the second by recency: two frogs, two colours);
    the no-reasoning rules and the guess among the story's colours score as counted by hand; the
    script runs the shipped model on the file and reports every rule."""
    sys.path.insert(0, str(BENCHMARKS))
    import babi_task16
    from relnet.tasks.babi.data import read_file

    (tmp_path / "qa16_valid.txt").write_text(TASK16_STORY)
    examples = read_file(tmp_path / "qa16_valid.txt", 16)
    assert [babi_task16.induction(e.story, e.question[-1]) for e in examples] == ["green", "white"]
    report = babi_task16.compare(examples, ["yellow", "white"])
    assert report["model_right"] == 0.5 and report["model_answers_a_story_colour"] == 1.0
    assert report["story_colour_guess_right"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    rules = report["rules"]
    assert rules["the story's last colour"] == {"right": 0.5, "model_agrees": 1.0}  # yellow, white
    assert rules["the story's most frequent colour"]["right"] == 1.0  # green; white
    with pytest.raises(ValueError, match="1 model answers for 2 questions"):
        babi_task16.compare(examples, ["white"])
    out = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "babi_task16.py"), "--data", str(tmp_path),
                             "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert saved["questions"] == 2 and set(saved["rules"]) == set(babi_task16.RULES)
    assert "| induction: last colour of another of the asked one's kind | 100.0% |" in result.stdout


def test_babi_seen_splits_accuracy_by_repeats_of_training_questions(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import babi_seen
    from relnet.tasks.babi.data import read_file

    (tmp_path / "qa16_train.txt").write_text(TASK16_STORY)
    first, second = read_file(tmp_path / "qa16_train.txt", 16)
    other = type(first)(task=16, story=first.story, question=("what", "color", "is", "lily"), answer="yellow")
    report = babi_seen.seen_report([first], [first, second, other], ["green", "white", "gray"])
    assert report["distinct_training_stories"] == 1 and report["question_seen"] == 1 / 3
    assert report["story_seen"] == 2 / 3  # ``other`` asks something new of a training story
    assert report["accuracy_seen"] == 1.0 and report["accuracy_unseen"] == 0.5 and report["accuracy"] == 2 / 3
    (tmp_path / "qa16_valid.txt").write_text(TASK16_STORY)
    out = tmp_path / "seen.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "babi_seen.py"), "--data", str(tmp_path), "--tasks", "16",
                             "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    saved = json.loads(out.read_text())["16"]
    assert saved["question_seen"] == 1.0 and saved["accuracy_unseen"] is None
    assert "| 16 basic-induction | 2 of 2 | 100.0% | 100.0% |" in result.stdout


def test_malloc_reuse_benchmark_smoke(tiny_sort_of_clevr, tmp_path):
    out = tmp_path / "malloc.json"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "malloc_reuse.py"), "--data", str(tiny_sort_of_clevr),
                             "--smoke", "--json", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [run["applied"] for run in runs["default"] + runs["kept"]] == [False, platform.libc_ver()[0] == "glibc"]
    assert "median step time" in result.stdout


def test_margins_are_how_much_nearer_the_answer_is_than_the_other_shape(tiny_sort_of_clevr, tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import numpy as np
    from sort_of_clevr_margins import buckets, main, margins

    shape = np.array([[0, 1, 1, 0, 0, 0]])
    xy = np.array([[[10, 10], [20, 10], [10, 23], [22, 10], [60, 60], [10, 40]]])
    asked = dict(image=np.array([0]), x=np.array([0]))
    # Closest to object 0 is object 1 (10 px), the nearest square object 3 (12 px); furthest is
    # object 4 (70.7 px), the furthest circle object 2 (13 px).
    np.testing.assert_allclose(margins(shape, xy, closest=True, **asked), [2.0])
    np.testing.assert_allclose(margins(shape, xy, closest=False, **asked), [50 * 2**0.5 - 13])
    # Every other object a circle, as the answer: nothing of the other shape to confuse it with.
    np.testing.assert_allclose(margins(np.array([[0, 1, 1, 1, 1, 1]]), xy, closest=True, **asked), [np.inf])
    assert buckets(np.array([1.0, 1.99, 2.0, 11.9, 12.0, 80.0, np.inf])).tolist() == [0, 0, 1, 5, 6, 6, 6]
    out = tmp_path / "margins.json"
    assert main(["pretrained:sort-of-clevr-pixels", "--data", str(tiny_sort_of_clevr), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    test = np.load(tiny_sort_of_clevr / "test.npz")
    for name, subtype in (("closest", 0), ("furthest", 1)):
        asked_count = ((test["q_kind"] == 1) & (test["q_subtype"] == subtype)).sum()
        assert sum(row["questions"] for row in rows[name]) == asked_count > 0


def test_positions_are_read_from_the_cells_around_each_object(tiny_sort_of_clevr, tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    import torch
    from sort_of_clevr_positions import errors, fit_linear, main, neighbourhoods

    # 5 x 5 cells of 15 px, one number each: (row * 5 + column) + 1.
    objects = torch.arange(1.0, 26.0).reshape(1, 25, 1)
    xy = torch.tensor([[[37.0, 52.0], [3.0, 74.0]]])  # cells (row 3, column 2) and (row 4, column 0)
    features, places = neighbourhoods(objects, xy)
    assert features.tolist() == [[12, 13, 14, 17, 18, 19, 22, 23, 24], [0, 16, 17, 0, 21, 22, 0, 0, 0]]
    assert places.tolist() == [[37 - 37.5, 52 - 52.5], [3 - 7.5, 74 - 67.5]]
    assert neighbourhoods(objects, xy, reach=0)[0].tolist() == [[18], [21]]
    # A target that is a linear function of the features is read back exactly by least squares.
    inputs = torch.randn(50, 9)
    target = inputs[:, :2] * 3 + 1
    assert errors(fit_linear(inputs, target)(inputs), target)["rmse_x"] < 1e-2
    assert errors(torch.tensor([[0.5, 3.0]]), torch.zeros(1, 2)) == {
        "rmse_x": 0.5, "rmse_y": 3.0, "beyond_1px": 0.5, "beyond_2px": 0.5}
    out = tmp_path / "positions.json"
    assert main(["pretrained:sort-of-clevr-pixels", "--data", str(tiny_sort_of_clevr), "--mlp-steps", "3",
                 "--capacity-steps", "2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 8 and all(0 < row["rmse_x"] < 75 for row in rows.values())
    with pytest.raises(SystemExit):
        main(["pretrained:sort-of-clevr-pixels", "--data", str(tiny_sort_of_clevr), "--capacity-steps", "-5"])


def test_every_study_variant_is_a_preset_its_data_accepts(tiny_sort_of_clevr):
    sys.path.insert(0, str(BENCHMARKS))
    from sort_of_clevr_study import BASES, VARIANTS
    from relnet.tasks import get_preset, get_task

    for variant, (name, base, changes) in VARIANTS.items():
        preset = get_preset(name).with_overrides(BASES[base] + changes)
        split = get_task(preset.task).load(tiny_sort_of_clevr, "train", preset)
        assert len(split.epoch_order(seed=0, epoch=0, batch_size=preset.batch_size)) == len(split), variant


def test_study_summarizes_a_run_stopped_before_its_first_full_evaluation(tmp_path):
    import argparse

    sys.path.insert(0, str(BENCHMARKS))
    from sort_of_clevr_study import summarize, table

    (tmp_path / "final").mkdir()
    subset = {"questions_seen": 20_000, "train_seconds": 120.0, "subset": True, "epoch": 0.1,
              "eval": {"by_kind": {"non_relational": 0.5, "binary": 0.6}, "by_subtype": {}}}
    (tmp_path / "final" / "history.json").write_text(json.dumps([subset]))
    args = argparse.Namespace(out=tmp_path, smoke=False, epochs=20, max_minutes=60, eval_every=20_000, device="cpu",
                              precision="auto")
    summary = summarize(["final"], args)
    assert summary["final"]["last_full_evaluation"] is None
    assert summary["final"]["curves"]["binary"] == [[20_000, 120.0, 0.6]]
    row = table(summary).splitlines()[-1]
    assert row.startswith("| final |") and "no full evaluation yet" in row and row.count("|") == 12


def test_physics_symmetries_benchmark_smoke(tmp_path):
    from relnet.tasks.physics.data import write_dataset

    write_dataset(tmp_path / "data", train_scenes=1, test_scenes=40, seed=5, progress=False)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "physics_symmetries.py"), "--data", str(tmp_path / "data"),
                             "--json", str(tmp_path / "out.json")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads((tmp_path / "out.json").read_text())
    assert figures["scenes"] == 40 and len(figures["single_maps"]) == 8
    assert figures["single_maps"][0] == figures["none"]  # the identity first: the scenes as they are
    assert figures["trained_with"] == "d4"  # the shipped model respects the symmetries
    assert "the mean over the box's 8 symmetries" in result.stdout
