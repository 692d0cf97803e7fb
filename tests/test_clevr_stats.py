"""`relnet data clevr-stats`: statistics of a hand-built folder (exact numbers), of the real CLEVR
sample when it is present, the CLI's text, JSON and --compare table, and its one-line errors."""

import json
from pathlib import Path

import pytest

from relnet.cli import main
from relnet.errors import DataError
from relnet.tasks.clevr.stats import compare_table, format_statistics, scene_statistics

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "clevr-real-sample"


def obj(shape, size, color, material, x, y, rotation):
    z = 0.7 if size == "large" else 0.35
    return {"shape": shape, "size": size, "color": color, "material": material, "3d_coords": [x, y, z],
            "pixel_coords": [100, 100, 10.0], "rotation": rotation}


SCENES = [
    {"image_index": 0, "image_filename": "CLEVR_tiny_000000.png", "split": "tiny", "objects": [
        obj("cube", "large", "red", "metal", 1, 2, 10),
        obj("sphere", "small", "blue", "rubber", -1, 0, 20),
        obj("cylinder", "small", "red", "rubber", 3, -2, 30)]},
    {"image_index": 4, "image_filename": "CLEVR_tiny_000004.png", "split": "tiny", "objects": [
        obj("cube", "small", "gray", "metal", 0, 1, 40),
        obj("cube", "large", "gray", "rubber", -3, 3, 50),
        obj("cube", "small", "yellow", "metal", 2, 0, 0),
        obj("sphere", "large", "cyan", "metal", 1, -1, 359),
        obj("cylinder", "large", "brown", "rubber", -2, 1, 100)]},
]


def program(*functions, key="function"):
    return [{key: name, "inputs": [step - 1] if step else [], "value_inputs": []}
            for step, name in enumerate(functions)]


QUESTIONS = [
    (0, "How many red things are there?", "2", 1, program("scene", "filter_color", "count")),
    (0, "Are there any cubes?", "yes", 2, program("scene", "filter_shape", "exist")),
    (4, "Is there a sphere?", "no", 2, program("scene", "filter_shape", "exist")),
    (4, "What color is the big sphere?", "cyan", 3, program("scene", "filter_size", "unique", "query_color")),
    (4, "Are there more cubes than spheres?", "yes", 4,
     [{"type": "scene", "inputs": [], "value_inputs": []}, {"type": "count", "inputs": [0], "value_inputs": []},
      {"type": "scene", "inputs": [], "value_inputs": []}, {"type": "count", "inputs": [2], "value_inputs": []},
      {"type": "greater_than", "inputs": [1, 3], "value_inputs": []}]),
    (4, "Is the cube the same size as the sphere?", "no", 5,
     [{"function": "scene", "inputs": [], "value_inputs": []}, {"function": "unique", "inputs": [0]},
      {"function": "query_size", "inputs": [1]}, {"function": "scene", "inputs": []},
      {"function": "unique", "inputs": [3]}, {"function": "query_size", "inputs": [4]},
      {"function": "equal_size", "inputs": [2, 5]}]),
    (4, "Is there a cube?", "yes", 2, program("scene", "filter_shape", "exist")),
]


def write_folder(root: Path, split="tiny", scenes=SCENES, questions=QUESTIONS) -> Path:
    if scenes is not None:
        (root / "scenes").mkdir(parents=True, exist_ok=True)
        (root / "scenes" / f"CLEVR_{split}_scenes.json").write_text(
            json.dumps({"info": {"split": split}, "scenes": scenes}))
    if questions is not None:
        (root / "questions").mkdir(parents=True, exist_ok=True)
        rows = [{"image_index": image, "question": text, "answer": answer, "question_family_index": family,
                 "program": nodes, "split": split} for image, text, answer, family, nodes in questions]
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(json.dumps({"questions": rows}))
    return root


def refused(capsys, argv, *needles):
    """The CLI exits non-zero with one `relnet: error:` line holding ``needles`` and no output."""
    assert main([str(arg) for arg in argv]) != 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("relnet: error:"), err
    assert captured.out == ""
    for needle in needles:
        assert str(needle) in err[0], (needle, err[0])


def test_tiny_folder_exact(tmp_path):
    stats = scene_statistics(write_folder(tmp_path), "tiny")
    json.dumps(stats)  # plain JSON-able
    scenes = stats["scenes"]
    assert scenes["scenes"] == 2 and scenes["objects"] == 8
    per = scenes["objects_per_scene"]
    assert per["mean"] == 4.0 and per["min"] == 3 and per["max"] == 5
    assert per["shares"] == {str(n): {3: 0.5, 5: 0.5}.get(n, 0.0) for n in range(3, 11)}
    attributes = scenes["attributes"]
    assert attributes["shape"] == {"cube": 0.5, "sphere": 0.25, "cylinder": 0.25}
    assert attributes["size"] == {"large": 0.5, "small": 0.5}
    assert attributes["material"] == {"rubber": 0.5, "metal": 0.5}
    assert attributes["color"] == {"gray": 0.25, "red": 0.25, "blue": 0.125, "green": 0.0, "brown": 0.125,
                                   "purple": 0.0, "cyan": 0.125, "yellow": 0.125}
    assert scenes["z"]["cube"]["large"] == {"objects": 2, "distinct": 1, "values": [0.7], "min": 0.7, "max": 0.7}
    assert scenes["z"]["cube"]["small"]["values"] == [0.35] and scenes["z"]["cube"]["small"]["objects"] == 2
    assert scenes["z"]["sphere"]["small"]["objects"] == 1 and scenes["z"]["cylinder"]["large"]["values"] == [0.7]
    assert scenes["x"] == {"min": -3, "max": 3, "mean": 0.125}
    assert scenes["y"] == {"min": -2, "max": 3, "mean": 0.5}
    assert scenes["rotation"] == {"min": 0.0, "max": 359.0, "mean": 609 / 8, "objects": 8}

    questions = stats["questions"]
    assert questions["questions"] == 7 and questions["images"] == 2 and questions["questions_per_image"] == 3.5
    assert questions["families"] == 5 and questions["without_program"] == 0
    assert questions["mean_words"] == pytest.approx(39 / 7)
    categories = questions["categories"]
    assert {c: row["questions"] for c, row in categories.items()} == {
        "count": 1, "exist": 3, "compare_numbers": 1, "query_attribute": 1, "compare_attribute": 1}
    assert categories["exist"]["share"] == pytest.approx(3 / 7)
    assert categories["exist"]["top_answers"] == [{"answer": "yes", "share": pytest.approx(2 / 3)},
                                                  {"answer": "no", "share": pytest.approx(1 / 3)}]
    assert categories["exist"]["majority_share"] == pytest.approx(2 / 3)
    assert categories["query_attribute"]["top_answers"] == [{"answer": "cyan", "share": 1.0}]
    assert categories["compare_numbers"]["majority_share"] == 1.0

    text = format_statistics(stats)
    assert "scenes: 2   objects: 8" in text and "mean 4.00" in text and "3: 50.0%" in text
    assert "cube     large  0.7" in text and "exist" in text and "yes 66.7%" in text


def test_scenes_only_and_questions_only(tmp_path):
    only_scenes = scene_statistics(write_folder(tmp_path / "a", questions=None), "tiny")
    assert only_scenes["questions"] is None and only_scenes["questions_file"] is None
    assert "questions: none" in format_statistics(only_scenes)
    only_questions = scene_statistics(write_folder(tmp_path / "b", scenes=None), "tiny")
    assert only_questions["scenes"] is None and only_questions["questions"]["questions"] == 7
    assert "scenes: none" in format_statistics(only_questions)
    table = compare_table(only_scenes, only_questions, ("A", "B"))
    assert "| scenes | 2 | - |" in table
    assert "exist questions" not in table  # categories only when both have questions


def test_compare_table(tmp_path):
    a = scene_statistics(write_folder(tmp_path / "a"), "tiny")
    b = scene_statistics(write_folder(tmp_path / "b", scenes=SCENES[:1], questions=QUESTIONS[:2]), "tiny")
    table = compare_table(a, b, ("gen", "real"))
    lines = table.splitlines()
    assert lines[0] == "| | gen | real |" and lines[1] == "|---|---:|---:|"
    for row in ["| scenes | 2 | 1 |", "| mean objects per scene | 4.00 | 3.00 |", "| scenes with 3 objects | 50.0% | 100.0% |",
                "| scenes with 10 objects | 0.0% | 0.0% |", "| shape cube | 50.0% | 33.3% |",
                "| color green | 0.0% | 0.0% |", "| z of large cubes | 0.7 | 0.7 |", "| z of small cubes | 0.35 | - |",
                "| x range | -3.00 to 3.00 | -1.00 to 3.00 |", "| y range | -2.00 to 3.00 | -2.00 to 2.00 |",
                "| exist questions | 42.9% | 50.0% |", "| count questions | 14.3% | 50.0% |"]:
        assert row in lines, (row, table)


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason="the real CLEVR sample is not present")
def test_real_sample():
    raw = json.loads((REAL_SAMPLE / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    counts = [len(scene["objects"]) for scene in raw]
    stats = scene_statistics(REAL_SAMPLE, "train")
    scenes = stats["scenes"]
    assert scenes["scenes"] == len(raw) == 24
    assert scenes["objects"] == sum(counts)
    assert scenes["objects_per_scene"]["mean"] == pytest.approx(sum(counts) / 24)
    assert round(scenes["objects_per_scene"]["mean"], 1) == 6.0
    assert sum(scenes["objects_per_scene"]["shares"].values()) == pytest.approx(1)
    for attribute, shares in scenes["attributes"].items():
        assert sum(shares.values()) == pytest.approx(1), attribute
    # real CLEVR rests every object on the ground: z is its radius (0.7 large, 0.35 small)
    for shape, by_size in scenes["z"].items():
        assert by_size["large"]["values"] == [0.7] and by_size["small"]["values"] == [0.35], shape
    xs = [obj["3d_coords"][0] for scene in raw for obj in scene["objects"]]
    assert scenes["x"]["min"] == min(xs) and scenes["x"]["max"] == max(xs) and -3 <= min(xs) < max(xs) <= 3
    assert 0 <= scenes["rotation"]["min"] < scenes["rotation"]["max"] <= 360
    assert stats["questions"] is None


def test_cli_text_and_json(tmp_path, capsys):
    root = write_folder(tmp_path / "clevr")
    out = tmp_path / "out" / "stats.json"
    assert main(["data", "clevr-stats", "--clevr-dir", str(root), "--split", "tiny", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "scenes: 2   objects: 8" in printed and f"wrote {out}" in printed
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(scene_statistics(root, "tiny")))
    assert [p.name for p in out.parent.iterdir()] == ["stats.json"]  # no temporary file left


def test_cli_compare(tmp_path, capsys):
    first = write_folder(tmp_path / "first")
    second = write_folder(tmp_path / "second", split="val", scenes=SCENES[1:], questions=None)
    out = tmp_path / "both.json"
    assert main(["data", "clevr-stats", "--clevr-dir", str(first), "--split", "tiny", "--compare", str(second),
                 "--compare-split", "val", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"| | {first} | {second} |"
    assert "| scenes | 2 | 1 |" in lines and "| split | tiny | val |" in lines
    assert not any(line.startswith("| exist questions") for line in lines)
    saved = json.loads(out.read_text())
    assert [s["split"] for s in saved["compared"]] == ["tiny", "val"]
    # the same directory twice: the columns are told apart by their split
    write_folder(first, split="val", questions=None)
    assert main(["data", "clevr-stats", "--clevr-dir", str(first), "--split", "tiny", "--compare", str(first),
                 "--compare-split", "val"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"| | {first} (tiny) | {first} (val) |"


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason="the real CLEVR sample is not present")
def test_cli_compare_with_real_sample(tmp_path, capsys):
    root = write_folder(tmp_path / "clevr", split="train")
    assert main(["data", "clevr-stats", "--clevr-dir", str(root), "--compare", str(REAL_SAMPLE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| scenes | 2 | 24 |" in lines and "| z of large cubes | 0.7 | 0.7 |" in lines


def test_cli_errors(tmp_path, capsys):
    root = write_folder(tmp_path / "clevr")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "val"],
            "no split 'val'", "scenes/CLEVR_val_scenes.json", "questions/CLEVR_val_questions.json")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", tmp_path / "absent"], "no such directory")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "../clevr"], "split name")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny", "--compare", tmp_path / "absent"],
            "no such directory")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny", "--compare", root,
                     "--compare-split", "a/b"], "--compare-split: split name 'a/b' is not allowed")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny", "--compare-split", "val"],
            "--compare-split needs --compare")
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny", "--json", ""], "--json is empty")

    scenes = root / "scenes" / "CLEVR_tiny_scenes.json"
    scenes.write_text('{"scenes": [')
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny"],
            "CLEVR_tiny_scenes.json", "not a valid CLEVR scenes file")
    scenes.write_text(json.dumps({"scenes": [{"image_index": 0, "objects": [{**SCENES[0]["objects"][0],
                                                                             "shape": "pyramid"}]}]}))
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny"],
            "CLEVR_tiny_scenes.json", "shape 'pyramid'")
    scenes.write_text(json.dumps({"scenes": [{"image_index": 0, "objects": [{**SCENES[0]["objects"][0],
                                                                             "rotation": "fast"}]}]}))
    refused(capsys, ["data", "clevr-stats", "--clevr-dir", root, "--split", "tiny"],
            "CLEVR_tiny_scenes.json", "scene 0, object 0: rotation fast")


def test_unknown_last_function(tmp_path):
    root = write_folder(tmp_path, scenes=None, questions=[(0, "Relate?", "yes", 0, program("scene", "relate"))])
    with pytest.raises(DataError, match="question 0: a program ending in 'relate' has no Table 1 category"):
        scene_statistics(root, "tiny")


def test_questions_without_program(tmp_path):
    root = tmp_path / "clevr"
    (root / "questions").mkdir(parents=True)
    (root / "questions" / "CLEVR_test_questions.json").write_text(json.dumps({"questions": [
        {"image_index": 0, "question": "Is it red?"}, {"image_index": 1, "question": "What is it?"}]}))
    questions = scene_statistics(root, "test")["questions"]
    assert questions["questions"] == 2 and questions["without_program"] == 2 and questions["families"] == 0
    assert all(row["questions"] == 0 and row["share"] is None for row in questions["categories"].values())
    assert "2 without a program" in format_statistics(scene_statistics(root, "test"))
