"""Generated CLEVR matches CLEVR v1.0 where it matters, and real CLEVR files (and subsets) cache as they are."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from relnet.cli import main
from relnet.errors import ConfigError, DataError
from relnet.tasks.clevr.data import load_cache, tokenize
from relnet.tasks.clevr.generate import GeneratorOptions, QuestionWriter, generate, make_scene, summarize
from relnet.tasks.clevr.questions import builtin_templates_dir, load_synonyms, load_templates
from relnet.tasks.clevr.render import cast
from relnet.tasks.clevr.scene import Camera
from relnet.tasks.clevr.schema import ATTRIBUTES, CATEGORIES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
OFFICIAL = SHARED / "clevr-gen" / "question_generation"
REAL = SHARED / "clevr-real-sample"


@pytest.fixture(scope="module")
def scenes():
    options = GeneratorOptions(split="counts")
    return [make_scene(index, options, with_image=False)[0] for index in range(240)]


def test_object_counts_are_uniform_from_3_to_10(scenes):
    # CLEVR v1.0: 11-14% of scenes for each count; redrawing the count after a failed placement
    # made large scenes rare (10 objects: 0%).
    counts = Counter(len(scene["objects"]) for scene in scenes)
    assert set(counts) == set(range(3, 11))
    assert min(counts.values()) >= 0.07 * len(scenes), counts
    assert np.mean([len(scene["objects"]) for scene in scenes]) > 6.0


def test_cubes_have_clevr_v1_size(scenes):
    for scene in scenes[:40]:
        for obj in scene["objects"]:
            assert obj["3d_coords"][2] == {"large": 0.7, "small": 0.35}[obj["size"]]
    # A large cube seen by the default camera: its top face is 1.4 above the floor (half-side 0.7).
    cube = {"shape": "cube", "size": "large", "color": "red", "material": "rubber", "3d_coords": [0.0, 0.0, 0.7],
            "rotation": 0.0}
    camera = Camera.looking_at([7.36, -6.93, 4.96])
    depth, _, ids = cast([cube], camera)
    points = camera.position + depth[..., None] * camera.ray_directions()
    on_cube = points[ids == 0]
    assert on_cube[:, 2].max() == pytest.approx(1.4, abs=1e-6)
    assert np.abs(on_cube[:, :2]).max() == pytest.approx(0.7, abs=0.02)


def test_scenes_without_images_are_the_rendered_scenes():
    options = GeneratorOptions(split="same")
    for index in range(3):
        assert make_scene(index, options, with_image=False)[0] == make_scene(index, options)[0]


def _templates_in(directory: Path, names: list[str]) -> Path:
    directory.mkdir()
    source = json.loads((builtin_templates_dir() / "exist.json").read_text())
    for name in names:
        (directory / name).write_text(json.dumps(source[:1]))
    return directory


def test_families_follow_clevr_file_order(tmp_path):
    names = ["zero_hop.json", "compare_integer.json", "one_hop.json", "extra.json", "comparison.json"]
    templates = load_templates(_templates_in(tmp_path / "templates", names))
    assert [t.filename for t in templates] == ["compare_integer.json", "comparison.json", "one_hop.json",
                                               "zero_hop.json", "extra.json"]
    assert [t.family for t in templates] == [0, 1, 2, 3, 4]


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official CLEVR templates not present in ../shared/data/clevr-gen")
def test_official_families_carry_clevr_v1_numbers():
    templates = load_templates(OFFICIAL / "CLEVR_1.0_templates")
    # CLEVR v1.0 asks "What is the thing in front of the small metallic object made of?" as family 76.
    assert templates[76].filename == "one_hop.json" and templates[76].text[0].startswith("What is the material of")
    assert templates[0].filename == "compare_integer.json" and templates[-1].filename == "zero_hop.json"


def _category_shares(templates, scenes) -> dict:
    writer = QuestionWriter(templates, load_synonyms(None), GeneratorOptions(questions_per_image=10))
    for scene in scenes:
        writer.add(scene)
    summary = summarize(writer.questions)
    return {c: summary[c]["questions"] / len(writer.questions) for c in CATEGORIES}, summary


def test_question_mix_follows_the_families(scenes):
    # Every family is asked about equally often, as by CLEVR's generator: count questions were
    # 5.4% of the output when per-family balancing rejected them freely.
    templates = load_templates(builtin_templates_dir())
    shares, summary = _category_shares(templates, scenes[:150])
    for category in CATEGORIES:
        expected = sum(t.category == category for t in templates) / len(templates)
        assert shares[category] == pytest.approx(expected, abs=0.05), (category, shares)
        assert summary[category]["majority_share"] < 0.6
    assert shares["count"] > 0.18


@pytest.mark.skipif(not OFFICIAL.is_dir(), reason="official CLEVR templates not present in ../shared/data/clevr-gen")
def test_official_templates_give_clevrs_category_mix(scenes):
    shares, _ = _category_shares(load_templates(OFFICIAL / "CLEVR_1.0_templates"), scenes[:120])
    # 21 of CLEVR's 90 families count, 32 query an attribute.
    assert shares["count"] == pytest.approx(21 / 90, abs=0.05) and shares["query_attribute"] > 0.3, shares


def test_no_images_data_and_state_only_cache(tmp_path, capsys):
    with_images, without = tmp_path / "with", tmp_path / "without"
    for out, extra in ((with_images, []), (without, ["--no-images"])):
        assert main(["data", "clevr-gen", "--out", str(out), "--images", "6", "--split", "train", "--workers", "1",
                     "--no-progress", *extra]) == 0
    assert not (without / "images").exists()
    for kind in ("scenes", "questions"):
        name = f"{kind}/CLEVR_train_{kind}.json"
        assert (with_images / name).read_bytes() == (without / name).read_bytes()
    assert main(["data", "clevr-gen", "--out", str(without), "--images", "3", "--split", "val", "--workers", "1",
                 "--no-progress", "--no-images"]) == 0
    cache = tmp_path / "cache"
    assert main(["data", "clevr", "--clevr-dir", str(without), "--out", str(cache), "--no-images", "--no-progress"]) == 0
    assert not (cache / "train_images.npy").exists()
    arrays = load_cache(cache, "train", with_images=False, with_objects=True)
    assert arrays["objects"].shape == (6, 10, 3 + sum(len(v) for v in ATTRIBUTES.values()))
    assert main(["train", "--preset", "clevr-state", "--data", str(cache), "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--no-progress"]) == 0
    with pytest.raises(DataError, match="state-only cache"):
        load_cache(cache, "train", with_images=True, with_objects=False)
    # A folder of the val split alone (as the official val download) caches with its own words, and
    # a trained model evaluates on it as on the cache it was trained with (issue 26).
    val_only = tmp_path / "val-only"
    for kind in ("scenes", "questions"):
        (val_only / kind).mkdir(parents=True)
        shutil.copy(without / kind / f"CLEVR_val_{kind}.json", val_only / kind)
    assert main(["data", "clevr", "--clevr-dir", str(val_only), "--out", str(tmp_path / "val-cache"), "--no-images",
                 "--no-progress"]) == 0
    scores = []
    for data in (cache, tmp_path / "val-cache"):
        capsys.readouterr()
        assert main(["eval", str(tmp_path / "run"), "--data", str(data), "--json", "--no-progress"]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0]["questions"] == scores[1]["questions"] > 0 and scores[0]["overall"] == scores[1]["overall"]
    assert main(["train", "--preset", "clevr-pixels", "--data", str(cache), "--out", str(tmp_path / "pixels"),
                 "--epochs", "1", "--no-progress"]) == 2


def test_object_features_in_documented_order(tmp_path):
    assert main(["data", "clevr-gen", "--out", str(tmp_path / "d"), "--images", "2", "--no-images", "--workers", "1",
                 "--no-progress"]) == 0
    assert main(["data", "clevr", "--clevr-dir", str(tmp_path / "d"), "--out", str(tmp_path / "c"), "--no-images",
                 "--no-progress"]) == 0
    scene = json.loads((tmp_path / "d/scenes/CLEVR_train_scenes.json").read_text())["scenes"][0]
    table = load_cache(tmp_path / "c", "train", with_images=False, with_objects=True)["objects"][0]
    for slot, obj in enumerate(scene["objects"]):
        assert table[slot, :3].tolist() == pytest.approx(obj["3d_coords"])
        offset = 3
        for attribute in ("size", "color", "material", "shape"):  # docs/clevr.md's order
            values = ATTRIBUTES[attribute]
            assert values[int(table[slot, offset:offset + len(values)].argmax())] == obj[attribute]
            offset += len(values)


def test_a_subset_with_gaps_caches_by_image_filename(tmp_path):
    # Images 10..13 only, and one of them renamed through its scene's image_filename.
    data = tmp_path / "subset"
    generate(data, GeneratorOptions(images=4, questions_per_image=3, split="train", start_index=10), progress=False)
    scenes_file = data / "scenes/CLEVR_train_scenes.json"
    record = json.loads(scenes_file.read_text())
    record["scenes"][1]["image_filename"] = "my_render.png"
    (data / "images/train/CLEVR_train_000011.png").rename(data / "images/train/my_render.png")
    scenes_file.write_text(json.dumps(record))
    cache = tmp_path / "cache"
    assert main(["data", "clevr", "--clevr-dir", str(data), "--out", str(cache), "--image-size", "32",
                 "--workers", "1", "--no-progress"]) == 0
    arrays = load_cache(cache, "train", with_images=True, with_objects=True)
    assert arrays["images"].shape == (4, 32, 32, 3)
    ids = np.load(cache / "train_questions.npz")["image_ids"]
    assert ids.tolist() == [10, 11, 12, 13]
    questions = json.loads((data / "questions/CLEVR_train_questions.json").read_text())["questions"]
    assert [ids[row] for row in arrays["image_index"]] == [q["image_index"] for q in questions]
    counts = [len(scene["objects"]) for scene in record["scenes"]]
    assert arrays["object_count"].tolist() == counts


@pytest.mark.skipif(not REAL.is_dir(), reason="the real CLEVR sample is not present in ../shared/data")
def test_real_clevr_sample_caches_and_its_objects_match(tmp_path):
    data = tmp_path / "real"
    (data / "images").mkdir(parents=True)
    shutil.copytree(REAL / "images" / "train", data / "images" / "train")
    shutil.copytree(REAL / "scenes", data / "scenes")
    assert main(["data", "clevr-gen", "--out", str(data), "--scenes", str(data / "scenes/CLEVR_train_scenes.json"),
                 "--questions-per-image", "3", "--no-progress"]) == 0
    assert main(["data", "clevr", "--clevr-dir", str(data), "--out", str(tmp_path / "cache"), "--image-size", "32",
                 "--workers", "1", "--no-progress"]) == 0
    arrays = load_cache(tmp_path / "cache", "train", with_images=True, with_objects=True)
    scenes = json.loads((REAL / "scenes/CLEVR_train_scenes.json").read_text())["scenes"]
    assert arrays["images"].shape[0] == len(scenes) == 24
    ordered = sorted(scenes, key=lambda scene: scene["image_index"])
    assert arrays["object_count"].tolist() == [len(scene["objects"]) for scene in ordered]


def test_a_trained_model_reads_a_cache_of_another_vocabulary(tmp_path, capsys):
    for name, seed, images in (("a", "0", "5"), ("b", "7", "4")):
        for split in ("train", "val"):
            assert main(["data", "clevr-gen", "--out", str(tmp_path / name), "--images", images, "--split", split,
                         "--seed", seed, "--no-images", "--workers", "1", "--no-progress"]) == 0
        assert main(["data", "clevr", "--clevr-dir", str(tmp_path / name), "--out", str(tmp_path / f"cache-{name}"),
                     "--no-images", "--no-progress"]) == 0
    words_a = json.loads((tmp_path / "cache-a/vocab.json").read_text())["words"]
    words_b = json.loads((tmp_path / "cache-b/vocab.json").read_text())["words"]
    assert words_a != words_b
    run = tmp_path / "run"
    assert main(["train", "--preset", "clevr-state", "--data", str(tmp_path / "cache-a"), "--out", str(run),
                 "--epochs", "1", "--no-progress", "--precision", "fp32"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tmp_path / "cache-b"), "--json", "--no-progress",
                 "--precision", "fp32"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["questions"] == 40
    # The same questions through the model's own vocabulary: the words it knows keep their ids.
    from relnet.pretrained import load_trained
    task, preset, info, _ = load_trained(str(run))
    split = task.load(tmp_path / "cache-b", "val", preset, info)
    questions = json.loads((tmp_path / "b/questions/CLEVR_val_questions.json").read_text())["questions"]
    first = [words_a.index(w) if w in words_a else 1 for w in tokenize(questions[0]["question"])]
    length = int(split.tensors["lengths"][0])
    assert sorted(split.tensors["tokens"][0, :length].tolist()) == sorted(first)
    unknown = set(words_b) - set(words_a)
    assert ("not in the model's vocabulary" in captured.err) == any(
        w in unknown for q in questions for w in tokenize(q["question"]))
    # A run from before runs stored their words cannot be matched to another vocabulary: an error.
    old_info = {key: value for key, value in info.items() if key != "words"}
    with pytest.raises(ConfigError, match="predates relnet storing its words"):
        task.load(tmp_path / "cache-b", "val", preset, old_info)
    assert len(task.load(tmp_path / "cache-a", "val", preset, old_info)) == 50


def test_replacing_a_split_without_images_removes_its_old_images(tmp_path):
    """Old renders must not be cached against the new scenes of another seed."""
    out = tmp_path / "d"
    common = ["data", "clevr-gen", "--out", str(out), "--images", "2", "--workers", "1", "--no-progress"]
    assert main(common) == 0
    assert len(list((out / "images" / "train").glob("*.png"))) == 2
    (out / "images" / "train" / "notes.txt").write_text("mine")
    assert main([*common, "--seed", "5", "--no-images", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["notes.txt"]
    # A cache with images now says the images are missing instead of pairing old ones with new scenes.
    assert main(["data", "clevr", "--clevr-dir", str(out), "--out", str(tmp_path / "cache"), "--no-progress"]) == 2
