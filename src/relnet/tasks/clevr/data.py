"""`relnet data clevr`: the official CLEVR v1.0 layout (or the generator's) into a compact cache.

Cache files, per split S (all plain arrays, no pickle):
- ``S_images.npy``: uint8 [images, 128, 128, 3], memory-mappable; written in chunks by a pool
  of workers, resumable (``S_images.partial.npy`` + ``S_images.progress.json`` until done);
- ``S_questions.npz``: ``tokens`` int32 [Q, L] (0 pads), ``lengths``, ``image_index``,
  ``answer`` (index into the 28 answers, -1 where the split has none), ``category`` (index into
  the five Table 1 categories, -1 where unknown), ``family`` (-1 where unknown);
- ``S_objects.npz`` (splits with scenes): ``objects`` float32 [images, 10, 18] (3D coordinates,
  then one-hot color, shape, material, size) and ``object_count``;
- ``vocab.json``: the question words of the train split (0 ``<pad>``, 1 ``<unk>``) and the answers.
"""

from __future__ import annotations

import json
import re
import sys
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from relnet.errors import ConfigError, DataError
from relnet.io import load_npz, save_npz, write_json
from relnet.tasks.clevr.generate import read_json
from relnet.tasks.clevr.schema import ANSWERS, ATTRIBUTES, CATEGORIES, category_of

SPLITS = ("train", "val", "test")
MAX_OBJECTS = 10
OBJECT_FEATURES = 3 + sum(len(values) for values in ATTRIBUTES.values())
PAD, UNK = "<pad>", "<unk>"
HOW_TO_MAKE = "make the cache with `relnet data clevr --clevr-dir DIR --out CACHE`"


def tokenize(question: str) -> list[str]:
    return re.findall(r"[a-z0-9]+|[?;,.]", question.lower())


def _question_file(clevr_dir: Path, split: str) -> Path:
    return clevr_dir / "questions" / f"CLEVR_{split}_questions.json"


def encode_questions(path: Path, questions: list[dict], words: dict[str, int]) -> tuple[dict[str, np.ndarray], int]:
    """Question arrays and the number of words outside the vocabulary."""
    tokens = [tokenize(q.get("question", "")) for q in questions]
    width = max((len(t) for t in tokens), default=1)
    array = np.zeros((len(questions), max(width, 1)), dtype=np.int32)
    unknown = 0
    for row, words_of in enumerate(tokens):
        ids = [words.get(word, 1) for word in words_of]
        unknown += ids.count(1)
        array[row, :len(ids)] = ids
    answer_index = {answer: i for i, answer in enumerate(ANSWERS)}
    answers = np.full(len(questions), -1, dtype=np.int16)
    categories = np.full(len(questions), -1, dtype=np.int8)
    families = np.full(len(questions), -1, dtype=np.int16)
    image_index = np.zeros(len(questions), dtype=np.int32)
    for row, question in enumerate(questions):
        try:
            image_index[row] = int(question["image_index"])
            if "answer" in question:
                if question["answer"] not in answer_index:
                    raise DataError(f"{path}: question {row} has answer {question['answer']!r}, which is not one of "
                                    f"CLEVR's 28 answers")
                answers[row] = answer_index[question["answer"]]
            if question.get("program"):
                last = question["program"][-1]
                categories[row] = CATEGORIES.index(category_of(last.get("function", last.get("type"))))
            if "question_family_index" in question:
                families[row] = int(question["question_family_index"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: question {row} is malformed ({error!r}); expected image_index, question, "
                            f"answer and program as in CLEVR v1.0") from error
    return {"tokens": array, "lengths": np.array([len(t) for t in tokens], dtype=np.int32),
            "image_index": image_index, "answer": answers, "category": categories, "family": families}, unknown


def object_table(path: Path, scenes: list[dict], images: int) -> dict[str, np.ndarray]:
    """State descriptions: per image, up to 10 objects of 18 features."""
    objects = np.zeros((images, MAX_OBJECTS, OBJECT_FEATURES), dtype=np.float32)
    counts = np.zeros(images, dtype=np.int8)
    for position, scene in enumerate(scenes):
        try:
            index = int(scene["image_index"])
            if not 0 <= index < images:
                raise ValueError(f"image_index {index} outside 0..{images - 1}")
            if len(scene["objects"]) > MAX_OBJECTS:
                raise ValueError(f"{len(scene['objects'])} objects; at most {MAX_OBJECTS} are supported")
            for slot, obj in enumerate(scene["objects"]):
                objects[index, slot, :3] = obj["3d_coords"]
                offset = 3
                for attribute, values in ATTRIBUTES.items():
                    objects[index, slot, offset + values.index(obj[attribute])] = 1
                    offset += len(values)
            counts[index] = len(scene["objects"])
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{path}: scene {position} is malformed ({error!r}); expected objects with 3d_coords, "
                            f"color, shape, material and size") from error
    return {"objects": objects, "object_count": counts}


def _load_image(job) -> np.ndarray:
    paths, size = job
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for row, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                out[row] = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        except FileNotFoundError:
            raise DataError(f"{path}: image missing") from None
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"{path}: image unreadable ({error})") from None
    return out


def cache_images(paths: list[Path], out: Path, size: int, workers: int, progress: bool, chunk: int = 64) -> None:
    """Resized images into ``out`` (.npy), resuming a previous interrupted run."""
    from tqdm import tqdm

    partial = out.with_name(out.stem + ".partial.npy")
    progress_file = out.with_name(out.stem + ".progress.json")
    shape = (len(paths), size, size, 3)
    done = 0
    if partial.exists() and progress_file.exists():
        state = json.loads(progress_file.read_text())
        if tuple(state.get("shape", ())) == shape:
            done = int(state["images_done"])
    if done == 0:
        array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
    else:
        array = np.load(partial, mmap_mode="r+")
    jobs = [(paths[start:start + chunk], size) for start in range(done, len(paths), chunk)]
    bar = tqdm(total=len(paths), initial=done, desc=f"images {out.stem}", unit="image", disable=not progress)

    def store(block: np.ndarray) -> None:
        nonlocal done
        array[done:done + len(block)] = block
        done += len(block)
        array.flush()
        write_json(progress_file, {"shape": list(shape), "images_done": done})
        bar.update(len(block))

    if workers > 1 and len(jobs) > 1:
        with get_context("spawn").Pool(workers) as pool:
            for block in pool.imap(_load_image, jobs):
                store(block)
    else:
        for job in jobs:
            store(_load_image(job))
    bar.close()
    array.flush()
    partial.replace(out)
    progress_file.unlink(missing_ok=True)


def prepare(clevr_dir: Path, out: Path, splits=None, size: int = 128, workers: int = 1, progress: bool = True) -> list[Path]:
    """Build the cache of every split of ``clevr_dir`` that has a question file (or of ``splits``)."""
    if not clevr_dir.is_dir():
        raise DataError(f"{clevr_dir}: no such directory; expected CLEVR_v1.0/ with images/, questions/, scenes/")
    splits = list(splits) if splits else [s for s in SPLITS if _question_file(clevr_dir, s).exists()]
    if not splits:
        raise DataError(f"{clevr_dir}: no questions/CLEVR_{{train,val,test}}_questions.json found")
    if "train" not in splits and not (out / "vocab.json").exists():
        raise ConfigError(f"the question vocabulary is built on the train split; include train or reuse a cache "
                          f"that has {out / 'vocab.json'}")
    written = []
    vocab_path = out / "vocab.json"
    loaded = {split: read_json(_question_file(clevr_dir, split), "questions")["questions"] for split in splits}
    if "train" in loaded:
        words = sorted({word for q in loaded["train"] for word in tokenize(q.get("question", ""))})
        vocab = {"words": [PAD, UNK, *words], "answers": list(ANSWERS), "categories": list(CATEGORIES),
                 "image_size": size}
        write_json(vocab_path, vocab)
        written.append(vocab_path)
    vocab = json.loads(vocab_path.read_text())
    word_index = {word: i for i, word in enumerate(vocab["words"])}
    for split, questions in loaded.items():
        path = _question_file(clevr_dir, split)
        arrays, unknown = encode_questions(path, questions, word_index)
        if unknown:
            print(f"warning: {split}: {unknown} question words are not in the train vocabulary; encoded as {UNK}",
                  file=sys.stderr)
        images = int(arrays["image_index"].max()) + 1 if len(questions) else 0
        save_npz(out / f"{split}_questions.npz", arrays)
        written.append(out / f"{split}_questions.npz")
        scenes_path = clevr_dir / "scenes" / f"CLEVR_{split}_scenes.json"
        if scenes_path.exists():
            scenes = read_json(scenes_path, "scenes")["scenes"]
            images = max(images, len(scenes))
            save_npz(out / f"{split}_objects.npz", object_table(scenes_path, scenes, images))
            written.append(out / f"{split}_objects.npz")
        image_out = out / f"{split}_images.npy"
        if not image_out.exists():
            paths = [clevr_dir / "images" / split / f"CLEVR_{split}_{i:06d}.png" for i in range(images)]
            cache_images(paths, image_out, size, workers, progress)
        written.append(image_out)
    return written


def load_cache(cache: Path, split: str, with_images: bool, with_objects: bool) -> dict[str, np.ndarray]:
    """One split of the cache as arrays, checked for consistency."""
    if not (cache / "vocab.json").exists():
        raise DataError(f"{cache / 'vocab.json'}: no such file; {HOW_TO_MAKE}")
    arrays = load_npz(cache / f"{split}_questions.npz", ("tokens", "lengths", "image_index", "answer", "category",
                                                        "family"), HOW_TO_MAKE)
    images = int(arrays["image_index"].max()) + 1 if len(arrays["image_index"]) else 0
    if with_images:
        path = cache / f"{split}_images.npy"
        if not path.exists():
            raise DataError(f"{path}: no such file; {HOW_TO_MAKE}")
        arrays["images"] = np.load(path, allow_pickle=False)
        if arrays["images"].ndim != 4 or arrays["images"].shape[0] < images or arrays["images"].dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 [>= {images}, H, W, 3], got {arrays['images'].dtype} "
                            f"{arrays['images'].shape}")
    if with_objects:
        objects = load_npz(cache / f"{split}_objects.npz", ("objects", "object_count"),
                           f"the split needs a scenes file (CLEVR_{split}_scenes.json) for state descriptions")
        if objects["objects"].shape[0] < images or objects["objects"].shape[1:] != (MAX_OBJECTS, OBJECT_FEATURES):
            raise DataError(f"{cache / f'{split}_objects.npz'}: expected objects [>= {images}, {MAX_OBJECTS}, "
                            f"{OBJECT_FEATURES}], got {objects['objects'].shape}")
        arrays.update(objects)
    return arrays


def read_vocab(cache: Path) -> dict:
    path = cache / "vocab.json"
    if not path.exists():
        raise DataError(f"{path}: no such file; {HOW_TO_MAKE}")
    return json.loads(path.read_text())


