"""`relnet data clevr-gen`: CLEVR-format datasets on any CPU.

Images are rendered in parallel, each from its own seed (seed, split, image index), so the
output does not depend on the number of workers; questions are written in image order by the
main process, which keeps one answer-balancing tally over the whole split.
"""

from __future__ import annotations

import contextlib
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from relnet import __version__
from relnet.errors import ConfigError, DataError
from relnet.io import atomic_write, json_list_writer
from relnet.tasks.clevr.files import check_split_name, read_scenes
from relnet.tasks.clevr.questions import (Template, builtin_templates_dir, check_metadata, instantiate, load_synonyms,
                                          load_templates, question_text)
from relnet.tasks.clevr.render import render, sample_lights, visible_pixels
from relnet.tasks.clevr.scene import SceneOptions, object_count, place_objects, relationships, sample_camera
from relnet.tasks.clevr.schema import CATEGORIES, category_of


@dataclass(frozen=True)
class GeneratorOptions:
    images: int = 1000
    questions_per_image: int = 10
    split: str = "train"
    seed: int = 0
    start_index: int = 0
    scene: SceneOptions = SceneOptions()


def _seed(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), index, stream])


PLACEMENT_TRIES = 1000  # CLEVR's scenes are placed in a few tries; this many means they cannot be


def make_scene(index: int, options: GeneratorOptions, with_image: bool = True) -> tuple[dict, np.ndarray | None]:
    """Scene ``index`` of the split and its image (None without ``with_image``). The number of
    objects is drawn once; camera, lights and placement are drawn again until every object shows
    at least ``min_pixels`` pixels. Without the image only the object masks are cast, so the
    scene is the same either way."""
    rng = _seed(options.seed, options.split, index, 0)
    count = object_count(rng, options.scene)
    for _ in range(PLACEMENT_TRIES):
        camera = sample_camera(rng, options.scene)
        objects = place_objects(rng, camera, options.scene, count)
        lights = sample_lights(rng, options.scene.light_jitter)
        if objects is None:
            continue
        if with_image:
            image, ids = render(objects, camera, lights)
            visible = np.bincount(ids[ids >= 0].ravel(), minlength=len(objects))
        else:
            image, visible = None, visible_pixels(objects, camera)
        if visible.min() >= options.scene.min_pixels:
            break
    else:
        raise ConfigError(f"scene {index}: no placement of {count} objects found in {PLACEMENT_TRIES} tries; "
                          f"ask for fewer objects (--max-objects)")
    pixels = camera.project(np.array([obj["3d_coords"] for obj in objects]))
    for obj, (x, y, depth) in zip(objects, pixels):
        obj["pixel_coords"] = [int(round(x)), int(round(y)), round(float(depth), 4)]
    directions = camera.directions()
    filename = f"CLEVR_{options.split}_{index:06d}.png"
    scene = {"split": options.split, "image_index": index, "image_filename": filename, "objects": objects,
             "relationships": relationships(objects, directions), "directions": directions}
    return scene, image


def _render_to_file(job) -> dict:
    index, options, image_dir = job
    if image_dir is None:
        return make_scene(index, options, with_image=False)[0]
    scene, image = make_scene(index, options)
    atomic_write(Path(image_dir) / scene["image_filename"], lambda f: Image.fromarray(image).save(f, format="PNG"))
    return scene


class QuestionWriter:
    """Questions for scenes in order. Like CLEVR's generator, each question slot tries the least
    used families first, so every family, and so every category, gets its share of the split
    (CLEVR's category mix follows from its families); one answer tally per family keeps any
    answer from dominating a family."""

    def __init__(self, templates: list[Template], synonyms: dict, options: GeneratorOptions, sink=None):
        """``sink(question)`` takes each question as it is made (e.g. into a file); without one they
        are kept in ``questions``."""
        self.templates = templates
        self.synonyms = synonyms
        self.options = options
        self.used = np.zeros(len(templates), dtype=np.int64)
        self.tally: dict[int, Counter] = defaultdict(Counter)
        self.questions: list[dict] = []
        self.sink = sink or self.questions.append
        self.count = 0
        self.answers = _AnswersByCategory()

    tries_per_slot = 30

    def _balanced(self, family: int, answer: str) -> bool:
        """Whether the family may give ``answer`` once more: no answer may run more than 10% (+2)
        ahead of the family's next most frequent one, so that no family can be answered by its
        most common answer while answers that scenes make rare (large counts) stay possible."""
        tally = self.tally[family]
        others = max((count for other, count in tally.items() if other != answer), default=0)
        return tally[answer] + 1 <= 1.1 * others + 2

    def _least_used(self, rng: np.random.Generator, failed: set[int]) -> list[int]:
        """Template positions by how often they were asked, ties in random order, leaving out the
        ones that already failed on this scene."""
        shuffled = rng.permutation(len(self.templates))
        ordered = shuffled[np.argsort(self.used[shuffled], kind="stable")]
        return [int(p) for p in ordered if int(p) not in failed][:self.tries_per_slot]

    def add(self, scene: dict) -> None:
        rng = _seed(self.options.seed, self.options.split, scene["image_index"], 1)
        wanted = self.options.questions_per_image
        texts: set[str] = set()
        failed: set[int] = set()  # template positions with no (balanced) question about this scene: not tried again
        for _ in range(2 * wanted):
            if wanted == 0:
                break
            for position in self._least_used(rng, failed):
                template = self.templates[position]
                try:
                    made = instantiate(template, scene, rng)
                    if made is None:
                        failed.add(position)
                        continue
                    values, program, answer = made
                    if not self._balanced(template.family, answer):
                        failed.add(position)
                        continue
                    text = question_text(template, values, self.synonyms, rng)
                except (KeyError, IndexError, TypeError, ValueError) as error:  # a template load_templates let through
                    raise DataError(f"{template.filename}: template family {template.family} cannot be asked about "
                                    f"scene {scene['image_index']} ({error!r})") from None
                if text not in texts:
                    break
            else:
                continue
            self.used[position] += 1
            texts.add(text)
            self.tally[template.family][answer] += 1
            wanted -= 1
            question = {
                "split": scene["split"], "image_index": scene["image_index"],
                "image_filename": scene["image_filename"], "question_index": self.count,
                "question": text, "answer": answer, "program": program,
                "question_family_index": template.family, "template_filename": template.filename,
            }
            self.count += 1
            self.answers.add(question)
            self.sink(question)


def _info(split: str) -> dict:
    return {"split": split, "version": "1.0", "generator": f"relnet {__version__}",
            "license": "Creative Commons Attribution (CC BY 4.0)"}


def _load_question_sources(templates_dir, synonyms_path, metadata_path):
    if metadata_path is not None:
        check_metadata(metadata_path)
    return load_templates(templates_dir or builtin_templates_dir()), load_synonyms(synonyms_path)


def generate(out: Path, options: GeneratorOptions, workers: int = 1, templates_dir=None, synonyms_path=None,
             metadata_path=None, overwrite: bool = False, progress: bool = True, images: bool = True) -> dict:
    """Write images, scenes and questions of one split in the official CLEVR layout under ``out``;
    without ``images``, only the scenes and questions (the same ones), which is all a state model
    needs and several times faster."""
    from tqdm import tqdm

    check_split_name(options.split, "--split")
    templates, synonyms = _load_question_sources(templates_dir, synonyms_path, metadata_path)
    scenes_path = out / "scenes" / f"CLEVR_{options.split}_scenes.json"
    questions_path = out / "questions" / f"CLEVR_{options.split}_questions.json"
    image_dir = out / "images" / options.split
    for path in (scenes_path, questions_path):
        if path.exists() and not overwrite:
            raise ConfigError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    # Replacing a split: its old scenes, questions and images go first, so that a run stopped midway
    # never leaves a mix that a reader would take as complete, and no old image outlives its scene.
    for path in (scenes_path, questions_path):
        path.unlink(missing_ok=True)
    for path in image_dir.glob(f"CLEVR_{options.split}_*.png") if image_dir.is_dir() else ():
        path.unlink()
    if images:
        image_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(index, options, str(image_dir) if images else None)
            for index in range(options.start_index, options.start_index + options.images)]
    bar = tqdm(total=len(jobs), desc=f"clevr-gen {options.split}", unit="scene", disable=not progress)
    # Scenes and questions stream into their files as they are made: memory stays flat however
    # large the split (the files appear, complete, at the end).
    with json_list_writer(scenes_path, {"info": _info(options.split)}, "scenes") as add_scene, \
            json_list_writer(questions_path, {"info": _info(options.split)}, "questions") as add_question:
        writer = QuestionWriter(templates, synonyms, options, sink=add_question)
        with contextlib.ExitStack() as stack:
            if workers > 1:
                pool = stack.enter_context(get_context("spawn").Pool(workers))
                scenes = pool.imap(_render_to_file, jobs, chunksize=4 if images else 64)
            else:
                scenes = map(_render_to_file, jobs)
            for scene in scenes:
                add_scene(scene)
                writer.add(scene)
                bar.update()
    bar.close()
    result = {"scenes": str(scenes_path), "questions": str(questions_path), "summary": writer.answers.summary()}
    return {**result, "images": str(image_dir)} if images else result


def generate_questions(scenes_file: Path, out: Path, options: GeneratorOptions, templates_dir=None,
                       synonyms_path=None, metadata_path=None, overwrite: bool = False, progress: bool = True) -> dict:
    """Questions for the scenes of an existing scene file (e.g. the official CLEVR scenes)."""
    from tqdm import tqdm

    templates, synonyms = _load_question_sources(templates_dir, synonyms_path, metadata_path)
    scenes = read_scenes(scenes_file)
    bare = next((position for position, scene in enumerate(scenes) if "relationships" not in scene), None)
    if bare is not None:
        raise DataError(f"{scenes_file}: scene {bare} has no relationships; questions need them (as in CLEVR's scenes)")
    # The output name comes from the file: read_scenes has checked it names no other directory.
    split = scenes[0]["split"] if scenes and "split" in scenes[0] else check_split_name(options.split, "--split")
    scenes = [{"split": split, "image_filename": f"CLEVR_{split}_{scene['image_index']:06d}.png", **scene}
              for scene in scenes]
    questions_path = out / "questions" / f"CLEVR_{split}_questions.json"
    if questions_path.exists() and not overwrite:
        raise ConfigError(f"{questions_path} already exists; pass --overwrite to replace it or choose another --out")
    with json_list_writer(questions_path, {"info": _info(split)}, "questions") as add_question:
        writer = QuestionWriter(templates, synonyms, GeneratorOptions(**{**options.__dict__, "split": split}),
                                sink=add_question)
        for scene in tqdm(scenes, desc=f"questions {split}", unit="scene", disable=not progress):
            writer.add(scene)
    return {"questions": str(questions_path), "summary": writer.answers.summary()}


class _AnswersByCategory:
    """The answers of questions counted by Table-1 category, a question at a time."""

    def __init__(self):
        self.tallies: dict[str, Counter] = defaultdict(Counter)

    def add(self, question: dict) -> None:
        if "answer" in question and question.get("program"):
            last = question["program"][-1]
            self.tallies[category_of(last.get("function", last.get("type")))][question["answer"]] += 1

    def summary(self) -> dict:
        """Per category: questions, distinct answers, and the share of the most frequent answer
        (the accuracy of always giving it)."""
        summary = {}
        for category in CATEGORIES:
            tally = self.tallies.get(category, Counter())
            total = sum(tally.values())
            top = tally.most_common(1)
            summary[category] = {"questions": total, "answers": len(tally),
                                 "majority_answer": top[0][0] if top else None,
                                 "majority_share": round(top[0][1] / total, 4) if total else None}
        return summary


def summarize(questions: list[dict]) -> dict:
    """Per category: questions, distinct answers, and the share of the most frequent answer."""
    answers = _AnswersByCategory()
    for question in questions:
        answers.add(question)
    return answers.summary()
