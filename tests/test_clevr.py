import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from relnet.cli import main
from relnet.errors import ConfigError, DataError
from relnet.tasks import get_preset, get_task
from relnet.tasks.clevr.data import OBJECT_FEATURES, cache_images, prepare, tokenize
from relnet.tasks.clevr.generate import GeneratorOptions, QuestionWriter, generate, make_scene
from relnet.tasks.clevr.models import ImageAugment
from relnet.tasks.clevr.program import ProgramError, answer_text, execute, expand_template
from relnet.tasks.clevr.questions import builtin_templates_dir, check_metadata, load_synonyms, load_templates
from relnet.tasks.clevr.scene import SCENE_PRESETS, SceneOptions, relationships, sample_camera
from relnet.tasks.clevr.schema import ANSWERS, CATEGORIES
from relnet.tasks.clevr.task import ONE_OBJECT_FAMILIES, ClevrSplit, reverse_words
from relnet.tasks.clevr.verify import verify
from relnet.train.checkpoint import load_checkpoint
from relnet.train.loop import learning_rate

OFFICIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "clevr-gen" / "question_generation"


def obj(shape, color, size="large", material="rubber", x=0.0, y=0.0):
    return {"shape": shape, "color": color, "size": size, "material": material, "3d_coords": [x, y, 0.7]}


# Camera looking along +y: left is -x, behind is +y.
DIRECTIONS = {"left": [-1, 0, 0], "right": [1, 0, 0], "behind": [0, 1, 0], "front": [0, -1, 0]}
SCENE = {"objects": [obj("cube", "red", x=-2), obj("sphere", "blue", "small", "metal", x=0, y=2),
                     obj("cylinder", "red", "small", x=2, y=-1)]}
SCENE["relationships"] = relationships(SCENE["objects"], DIRECTIONS)


def program(*nodes):
    """Nodes as (function, inputs, values); inputs default to the previous node."""
    out = []
    for i, node in enumerate(nodes):
        function, *rest = node
        inputs = rest[0] if rest and rest[0] is not None else ([i - 1] if i else [])
        out.append({"function": function, "inputs": inputs, "value_inputs": rest[1] if len(rest) > 1 else []})
    return out


def test_relationships_follow_the_directions():
    rel = SCENE["relationships"]
    assert rel["left"][1] == [0] and rel["right"][0] == [1, 2] and rel["behind"][0] == [1]
    assert rel["front"][1] == [0, 2]


@pytest.mark.parametrize("nodes, answer", [
    ([("scene",), ("filter_color", None, ["red"]), ("count",)], "2"),
    ([("scene",), ("filter_shape", None, ["sphere"]), ("unique",), ("query_material",)], "metal"),
    ([("scene",), ("filter_shape", None, ["cube"]), ("unique",), ("relate", None, ["right"]),
      ("filter_size", None, ["small"]), ("count",)], "2"),
    ([("scene",), ("filter_shape", None, ["cube"]), ("unique",), ("same_color",), ("exist",)], "yes"),
    ([("scene",), ("filter_shape", None, ["sphere"]), ("unique",), ("same_size",), ("unique",), ("query_shape",)],
     "cylinder"),
    ([("scene",), ("filter_color", None, ["red"]), ("scene", []), ("filter_size", [2], ["small"]),
      ("intersect", [1, 3]), ("count",)], "1"),
    ([("scene",), ("filter_color", None, ["red"]), ("count",), ("scene", []), ("filter_color", [3], ["blue"]),
      ("count",), ("greater_than", [2, 5])], "yes"),
    ([("scene",), ("filter_shape", None, ["cube"]), ("unique",), ("query_color",), ("scene", []),
      ("filter_shape", [4], ["cylinder"]), ("unique",), ("query_color",), ("equal_color", [3, 7])], "yes"),
])
def test_executor_answers(nodes, answer):
    assert answer_text(execute(program(*nodes), SCENE)) == answer


def test_executor_rejects_bad_programs():
    with pytest.raises(ProgramError, match="holds 2 objects"):
        execute(program(("scene",), ("filter_color", None, ["red"]), ("unique",)), SCENE)
    with pytest.raises(ProgramError, match="unknown function"):
        execute(program(("scene",), ("teleport",)), SCENE)
    with pytest.raises(ProgramError, match="expected inputs"):
        execute(program(("scene",), ("query_color",)), SCENE)


def test_expand_template_skips_empty_filters():
    nodes = [{"type": "scene", "inputs": []},
             {"type": "filter_unique", "inputs": [0], "side_inputs": ["<Z>", "<C>", "<M>", "<S>"]},
             {"type": "query_shape", "inputs": [1]}]
    types = {"<Z>": "Size", "<C>": "Color", "<M>": "Material", "<S>": "Shape"}
    plain, output_of = expand_template(nodes, types, {"<Z>": None, "<C>": "blue", "<M>": None, "<S>": None})
    assert [n["function"] for n in plain] == ["scene", "filter_color", "unique", "query_shape"]
    assert output_of == [0, 2, 3] and answer_text(execute(plain, SCENE)) == "sphere"


def test_scenes_respect_spacing_and_are_deterministic():
    options = GeneratorOptions(scene=SceneOptions(min_objects=4, max_objects=6))
    scene, image = make_scene(3, options)
    again, image_again = make_scene(3, options)
    assert scene == again and np.array_equal(image, image_again)
    assert image.shape == (320, 480, 3) and image.dtype == np.uint8
    assert 4 <= len(scene["objects"]) <= 6
    coords = np.array([o["3d_coords"] for o in scene["objects"]])
    for i in range(len(coords)):
        for j in range(i):
            offset = coords[i, :2] - coords[j, :2]
            for name in ("left", "behind"):
                assert abs(offset @ np.array(scene["directions"][name][:2])) >= options.scene.margin - 1e-6
    for o in scene["objects"]:
        x, y, depth = o["pixel_coords"]
        assert 0 <= x < 480 and 0 <= y < 320 and depth > 0
    assert not np.array_equal(make_scene(4, options)[1], image)


def test_camera_projects_what_it_casts():
    camera = sample_camera(np.random.default_rng(0), SceneOptions())
    rays = camera.ray_directions()
    point = camera.position + 9.0 * rays[100, 200]
    x, y, _ = camera.project(point)
    assert abs(x - 200.5) < 1e-6 and abs(y - 100.5) < 1e-6


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("clevr")
    generate(root, GeneratorOptions(images=10, questions_per_image=6, split="train"), progress=False)
    generate(root, GeneratorOptions(images=4, questions_per_image=6, split="val"), progress=False)
    return root


def test_generated_layout_and_verification(generated):
    questions = json.loads((generated / "questions" / "CLEVR_train_questions.json").read_text())["questions"]
    scenes = json.loads((generated / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    assert len(scenes) == 10 and len(questions) == 60
    assert (generated / "images" / "train" / "CLEVR_train_000009.png").exists()
    assert {"image_index", "question", "answer", "program", "question_family_index"} <= set(questions[0])
    assert all("<" not in q["question"] and "[" not in q["question"] for q in questions)
    assert all(q["answer"] in ANSWERS for q in questions)
    report = verify(generated, "train")
    assert report["matched"] == report["questions"] == 60


def test_verify_reports_a_wrong_answer(generated, tmp_path, capsys):
    broken = tmp_path / "broken"
    for part in ("questions", "scenes"):
        (broken / part).mkdir(parents=True)
        for path in (generated / part).iterdir():
            (broken / part / path.name).write_text(path.read_text())
    path = broken / "questions" / "CLEVR_val_questions.json"
    data = json.loads(path.read_text())
    data["questions"][0]["answer"] = "yes" if data["questions"][0]["answer"] != "yes" else "no"
    path.write_text(json.dumps(data))
    assert main(["data", "clevr-verify", "--clevr-dir", str(broken), "--split", "val"]) == 1
    assert "23 of 24" in capsys.readouterr().out


def test_same_seed_same_bytes_whatever_the_workers(generated, tmp_path):
    generate(tmp_path, GeneratorOptions(images=4, questions_per_image=6, split="val"), workers=2, progress=False)
    for part in ("questions/CLEVR_val_questions.json", "scenes/CLEVR_val_scenes.json", "images/val/CLEVR_val_000003.png"):
        assert (tmp_path / part).read_bytes() == (generated / part).read_bytes()


def test_builtin_templates_cover_every_category_with_balanced_answers():
    templates = load_templates(builtin_templates_dir())
    assert {t.category for t in templates} == set(CATEGORIES)
    writer = QuestionWriter(templates, load_synonyms(None), GeneratorOptions(questions_per_image=10))
    rng = np.random.default_rng(0)
    camera = sample_camera(rng, SceneOptions())
    from relnet.tasks.clevr.scene import place_objects
    for index in range(150):
        objects = None
        while objects is None:
            objects = place_objects(rng, camera, SceneOptions(), 3 + index % 8)
        writer.add({"split": "train", "image_index": index, "image_filename": "", "objects": objects,
                    "relationships": relationships(objects, camera.directions())})
    from relnet.tasks.clevr.generate import summarize
    summary = summarize(writer.questions)
    for category in CATEGORIES:
        # Families are asked equally often, so each category gets about its share of the families.
        share = sum(t.category == category for t in templates) / len(templates)
        assert summary[category]["questions"] > 0.6 * share * len(writer.questions), (category, summary)
        assert summary[category]["majority_share"] < 0.6


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official CLEVR templates not present in ../shared/data/clevr-gen")
def test_official_templates_instantiate_and_verify(generated, tmp_path):
    check_metadata(OFFICIAL / "metadata.json")
    assert len(load_templates(OFFICIAL / "CLEVR_1.0_templates")) == 90
    assert main(["data", "clevr-gen", "--out", str(tmp_path), "--scenes",
                 str(generated / "scenes" / "CLEVR_train_scenes.json"), "--templates",
                 str(OFFICIAL / "CLEVR_1.0_templates"), "--synonyms", str(OFFICIAL / "synonyms.json"),
                 "--metadata", str(OFFICIAL / "metadata.json"), "--no-progress"]) == 0
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "CLEVR_train_scenes.json").write_text(
        (generated / "scenes" / "CLEVR_train_scenes.json").read_text())
    report = verify(tmp_path, "train")
    assert report["questions"] == 100 and report["matched"] == 100


def test_metadata_with_other_values_is_refused(tmp_path):
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps({"types": {"Color": ["red"], "Shape": [], "Size": [], "Material": []}}))
    with pytest.raises(DataError, match="type Size"):
        check_metadata(path)


def test_cache_and_every_preset_trains(generated, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["data", "clevr", "--clevr-dir", str(generated), "--out", str(cache), "--workers", "1",
                 "--image-size", "64", "--no-progress"]) == 0
    images = np.load(cache / "train_images.npy")
    assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8
    objects = np.load(cache / "train_objects.npz")
    assert objects["objects"].shape == (10, 10, OBJECT_FEATURES)
    counts = objects["object_count"]
    assert np.all(objects["objects"][np.arange(10)[None] >= counts[:, None]] == 0)
    # The CPU-sized pixel presets are sized for 80-pixel images: a 64-pixel cache is refused by name,
    # and trains when the run says so.
    refused = tmp_path / "refused"
    assert main(["train", "--preset", "clevr-small-pixels", "--data", str(cache), "--out", str(refused),
                 "--epochs", "1", "--no-progress"]) == 2
    assert "holds 64-pixel images; preset 'clevr-small-pixels' is sized for 80-pixel" in capsys.readouterr().err
    assert not (refused / "checkpoint.pt").exists()
    for setting, message in (("data.image_size=x", "data.image_size must be a whole number of pixels"),
                             ("data.scenes=[1]", "data.scenes (the scenes")):
        assert main(["train", "--preset", "clevr-small-question", "--data", str(cache), "--out", str(refused),
                     "--epochs", "1", "--no-progress", "--set", setting]) == 2
        assert message in capsys.readouterr().err
    # A curriculum of families the training split does not hold is refused by name, before any step.
    assert main(["train", "--preset", "clevr-small-pixels", "--data", str(cache), "--out", str(refused),
                 "--epochs", "1", "--no-progress", "--set", "data.image_size=64", "--set",
                 "data.curriculum_families=[99]"]) == 2
    assert "no training question is of the families [99]" in capsys.readouterr().err
    assert not (refused / "checkpoint.pt").exists()
    for name in ("clevr-state", "clevr-pixels", "clevr-cnn-lstm", "clevr-cnn-lstm-sa", "clevr-small-pixels",
                 "clevr-small-cnn-lstm", "clevr-small-cnn-lstm-sa", "clevr-small-question"):
        run = tmp_path / name
        sized = ["--set", "data.image_size=64"] if name in ("clevr-small-pixels", "clevr-small-cnn-lstm",
                                                            "clevr-small-cnn-lstm-sa") else []
        assert main(["train", "--preset", name, "--data", str(cache), "--out", str(run), "--epochs", "1",
                     "--no-progress", *sized]) == 0
        metrics = json.loads((run / "metrics.json").read_text())
        assert set(metrics["by_category"]) <= {*CATEGORIES, "overall"} and metrics["questions"] == 24
    out = capsys.readouterr().out
    assert "Compare Attribute" in out and "paper" in out
    # New examples for a CPU-sized model are the scenes it was trained on: 3 to 6 objects.
    info = load_checkpoint(tmp_path / "clevr-small-question" / "checkpoint.pt")["info"]
    fresh = get_task("clevr").generated_split(get_preset("clevr-small-question"), info, 12, seed=5)
    assert fresh.tensors["object_count"].max() <= 6 and len(fresh) > 0
    assert main(["predict", str(tmp_path / "clevr-state"), "--data", str(cache), "--split", "val",
                 "--out", str(tmp_path / "answers.txt"), "--no-progress"]) == 0
    answers = (tmp_path / "answers.txt").read_text().splitlines()
    assert len(answers) == 24 and set(answers) <= set(ANSWERS)


def test_cache_names_a_missing_image_and_resumes(tmp_path, generated, stopped_image_cache):
    from PIL import Image

    paths = [generated / "images" / "train" / f"CLEVR_train_{i:06d}.png" for i in range(10)]
    holes = tmp_path / "images"
    holes.mkdir()
    for i, path in enumerate(paths):
        if i != 7:
            (holes / path.name).write_bytes(path.read_bytes())
    patched = [holes / p.name for p in paths]
    out = tmp_path / "train_images.npy"
    with pytest.raises(DataError, match="CLEVR_train_000007.png: image missing"):
        cache_images(patched, out, 32, workers=1, progress=False, chunk=4)
    assert not out.exists() and not (tmp_path / "train_images.partial.npy").exists()  # refused before caching
    (holes / paths[7].name).write_bytes(paths[7].read_bytes())
    # Stopped after the first chunk of 4 images, then resumed: only the rest are read again.
    calls = stopped_image_cache(patched, out, 32, chunk=4)
    assert json.loads((tmp_path / "train_images.progress.json").read_text())["images_done"] == 4
    cache_images(patched, out, 32, workers=1, progress=False, chunk=4)
    assert calls == [4, 2]
    fresh = tmp_path / "fresh.npy"
    cache_images(paths, fresh, 32, workers=1, progress=False, chunk=4)
    assert np.array_equal(np.load(out), np.load(fresh))
    assert not (tmp_path / "train_images.progress.json").exists()
    with Image.open(paths[0]) as image:
        assert image.size == (480, 320)


def test_cache_warns_about_unknown_words_and_rejects_bad_json(generated, tmp_path, capsys):
    root = tmp_path / "clevr"
    (root / "questions").mkdir(parents=True)
    loaded = {split: json.loads((generated / "questions" / f"CLEVR_{split}_questions.json").read_text())
              for split in ("train", "val")}
    loaded["val"]["questions"][0]["question"] = "Is there a zorbl?"
    known = {word for q in loaded["train"]["questions"] for word in tokenize(q["question"])}
    unknown = sum(word not in known for q in loaded["val"]["questions"] for word in tokenize(q["question"]))
    for split, source in loaded.items():
        (root / "questions" / f"CLEVR_{split}_questions.json").write_text(json.dumps(source))
    (root / "images").symlink_to(generated / "images")
    prepare(root, tmp_path / "cache", workers=1, progress=False)
    assert unknown >= 1
    assert f"{unknown} question words are not in the cache's vocabulary" in capsys.readouterr().err
    (root / "questions" / "CLEVR_val_questions.json").write_text("{not json")
    with pytest.raises(DataError, match="CLEVR_val_questions.json: not a valid CLEVR questions file"):
        prepare(root, tmp_path / "cache2", workers=1, progress=False)


def test_reverse_words_keeps_padding_in_place():
    tokens = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    assert reverse_words(tokens, torch.tensor([3, 2])).tolist() == [[7, 6, 5, 0], [9, 8, 0, 0]]
    assert tokenize("Is the cube left of it?") == ["is", "the", "cube", "left", "of", "it", "?"]


def test_augment_only_in_training():
    augment = ImageAugment()
    images = torch.rand(3, 3, 32, 32)
    assert torch.equal(augment.eval()(images), images)
    moved = augment.train()(images)
    assert moved.shape == images.shape and not torch.allclose(moved, images)


def test_doubling_schedule():
    preset = get_preset("clevr-pixels")
    rates = [learning_rate(preset, step, 200 * 10, 0.0, None) for step in (0, 199, 200, 400, 1399, 1400, 1999)]
    assert rates[:4] == [5e-6, 5e-6, 1e-5, 2e-5] and rates[4] == 5e-6 * 64 and rates[5] == rates[6] == 5e-4
    assert get_task("clevr").eval_split == "val"


def test_streamed_json_lists_are_the_bytes_write_json_writes_and_appear_only_complete(tmp_path):
    from relnet.io import json_list_writer, write_json

    for items in ([], [{"a": [1, 2, {"b": "x\ny"}], "c": {}}], [1, "two", [], {"k": [3.5]}, None]):
        write_json(tmp_path / "whole.json", {"info": {"version": "1.0"}, "scenes": items})
        with json_list_writer(tmp_path / "streamed.json", {"info": {"version": "1.0"}}, "scenes") as append:
            for item in items:
                append(item)
        assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    with pytest.raises(RuntimeError):
        with json_list_writer(tmp_path / "stopped.json", {"info": {}}, "scenes") as append:
            append({"index": 0})
            raise RuntimeError("stopped midway")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["streamed.json", "whole.json"]


def test_a_generation_that_fails_midway_leaves_no_scene_or_question_file(tmp_path, monkeypatch):
    import relnet.tasks.clevr.generate as generate_module

    made = generate_module._render_to_file

    def fail_on_the_third(job):
        if job[0] == 2:
            raise ValueError("renderer failed")
        return made(job)

    monkeypatch.setattr(generate_module, "_render_to_file", fail_on_the_third)
    with pytest.raises(ValueError, match="renderer failed"):
        generate(tmp_path, GeneratorOptions(images=4), images=False, progress=False)
    assert not list((tmp_path / "scenes").glob("*")) and not list((tmp_path / "questions").glob("*"))


def test_the_small_scene_preset_holds_three_to_six_objects_unless_told_otherwise(tmp_path):
    def counts(*flags):
        out = tmp_path / "-".join(flags)
        assert main(["data", "clevr-gen", "--out", str(out), "--images", "12", "--no-images", "--workers", "1",
                     "--no-progress", *flags]) == 0
        scenes = json.loads((out / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
        return {len(scene["objects"]) for scene in scenes}

    assert counts("--preset", "small") <= {3, 4, 5, 6} and max(counts()) > 6  # CLEVR's own go to 10
    assert counts("--preset", "small", "--max-objects", "3") == {3}
    # The CLI's choices (written out, to keep `relnet --help` light) are the presets that exist.
    help_text = subprocess.run([sys.executable, "-m", "relnet", "data", "clevr-gen", "--help"], capture_output=True,
                               text=True).stdout
    assert "{" + ",".join(SCENE_PRESETS) + "}" in help_text


def test_the_curriculum_asks_its_families_first_then_every_question():
    family = torch.arange(100) % 10
    split = ClevrSplit("train", {"family": family, "answer": torch.zeros(100, dtype=torch.long)}, {}, "question",
                       curriculum_families=(2, 5), curriculum_epochs=1.5)
    first = split.epoch_order(0, 0, 8)
    # A whole epoch of the two families: each of their 20 questions once, then again in new shuffles.
    assert len(first) == 100 and set(family[first].tolist()) == {2, 5}
    assert sorted(first[:20].tolist()) == torch.nonzero((family == 2) | (family == 5)).flatten().tolist()
    second = split.epoch_order(0, 1, 8)
    assert set(family[second[:50]].tolist()) == {2, 5} and set(family[second[50:]].tolist()) - {2, 5}
    assert sorted(split.epoch_order(0, 2, 8).tolist()) == list(range(100))  # the curriculum is over
    assert torch.equal(split.epoch_order(0, 1, 8), second)  # a function of (seed, epoch): resumable


def test_one_object_families_are_the_templates_that_find_one_set_of_objects_without_relations():
    templates = load_templates(builtin_templates_dir())
    one_object = [t.family for t in templates if [n["type"] for n in t.nodes].count("scene") == 1
                  and not any(n["type"].startswith(("relate", "same_")) for n in t.nodes)]
    assert tuple(one_object) == ONE_OBJECT_FAMILIES
    assert {templates[f].category for f in one_object} == {"count", "exist", "query_attribute"}


@pytest.mark.parametrize("data, message", [
    ({"curriculum_epochs": -1}, "data.curriculum_epochs must be a number"),
    ({"curriculum_epochs": True}, "data.curriculum_epochs must be a number"),
    ({"curriculum_epochs": 1, "curriculum_families": []}, "data.curriculum_families must be a list"),
    ({"curriculum_families": [1.5]}, "data.curriculum_families must be a list"),
    ({"curriculum_families": "7"}, "data.curriculum_families must be a list")])
def test_a_malformed_curriculum_is_refused_by_name(data, message):
    import dataclasses
    preset = get_preset("clevr-small-pixels")
    preset = dataclasses.replace(preset, data={**preset.data, **data})
    with pytest.raises(ConfigError, match=message):
        get_task("clevr").check_preset(preset)
