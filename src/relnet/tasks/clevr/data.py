"""`relnet data clevr`: the official CLEVR v1.0 layout (or the generator's) into a compact cache.

A split's images are its rows: every image a scene or question names, in ``image_index`` order,
read from the scene's (or question's) ``image_filename``, so any subset of CLEVR caches as it is.

Cache files, per split S (all plain arrays, no pickle):
- ``S_images.npy`` (unless built with ``images=False``, a state-only cache): uint8
  [images, 128, 128, 3], memory-mappable; written in chunks by a pool
  of workers, resumable (``S_images.partial.npy`` + ``S_images.progress.json`` until done), with
  ``S_images.json``: the fingerprint of the source images (names, sizes, times) and the size;
- ``S_questions.npz``: ``tokens`` int32 [Q, L] (0 pads), ``lengths``, ``image_index`` (the
  question's image row), ``image_ids`` (each row's CLEVR ``image_index``),
  ``answer`` (index into the 28 answers, -1 where the split has none), ``category`` (index into
  the five Table 1 categories, -1 where unknown), ``family`` (-1 where unknown), and ``build``,
  ``vocab``: the ids of the run that wrote it and of the vocabulary its tokens index;
- ``S_objects.npz`` (splits with scenes): ``objects`` float32 [images, 10, 18] (3D coordinates,
  then one-hot size (2), color (8), material (2), shape (3)), ``object_count`` and ``build``;
- ``vocab.json``: the question words of the train split (of the splits cached, when train is not
  among them; 0 ``<pad>``, 1 ``<unk>``), the answers and its id;
- ``cache.json``: the manifest, written last: which build of every file belongs to the cache.
  A run removes it first, so a cache whose rebuild stopped midway is refused, never read mixed.

Source images are re-cached whenever their fingerprint or the image size changes.
"""

from __future__ import annotations

import hashlib
import re
import sys
import uuid
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from relnet.errors import ConfigError, DataError, shown
from relnet.io import directory_lock, load_npz, read_image, read_json_file, save_npz, write_json
from relnet.tasks.clevr.files import MAX_OBJECTS, check_split_name, read_questions, read_scenes
from relnet.tasks.clevr.schema import ANSWERS, ATTRIBUTES, CATEGORIES, category_of

SPLITS = ("train", "val", "test")
OBJECT_FEATURES = 3 + sum(len(values) for values in ATTRIBUTES.values())
PAD, UNK = "<pad>", "<unk>"
HOW_TO_MAKE = "make the cache with `relnet data clevr --clevr-dir DIR --out CACHE`"
MANIFEST = "cache.json"
CACHE_FORMAT = 3  # 3: image rows keyed by image_filename, state-only caches


def tokenize(question: str) -> list[str]:
    return re.findall(r"[a-z0-9]+|[?;,.]", question.lower())


def _question_file(clevr_dir: Path, split: str) -> Path:
    return clevr_dir / "questions" / f"CLEVR_{split}_questions.json"


def image_rows(questions: list[dict], scenes: list[dict] | None) -> list[int]:
    """The split's images in order: every ``image_index`` a scene or question names."""
    return sorted({q["image_index"] for q in questions} | {scene["image_index"] for scene in scenes or []})


def encode_questions(path: Path, questions: list[dict], words: dict[str, int],
                     rows: list[int]) -> tuple[dict[str, np.ndarray], int]:
    """Question arrays (each question's image as its row in ``rows``) and the number of words
    outside the vocabulary."""
    row_of = {index: row for row, index in enumerate(rows)}
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
            image_index[row] = row_of[int(question["image_index"])]
            if "answer" in question:
                if question["answer"] not in answer_index:
                    raise DataError(f"{path}: question {row} has answer {shown(question['answer'])}, which is not "
                                    f"one of CLEVR's 28 answers")
                answers[row] = answer_index[question["answer"]]
            if question.get("program"):
                last = question["program"][-1]
                categories[row] = CATEGORIES.index(category_of(last.get("function", last.get("type"))))
            if "question_family_index" in question:
                families[row] = int(question["question_family_index"])
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise DataError(f"{path}: question {row} is malformed ({error!r}); expected image_index, question, "
                            f"answer and program as in CLEVR v1.0") from error
    return {"tokens": array, "lengths": np.array([len(t) for t in tokens], dtype=np.int32),
            "image_index": image_index, "image_ids": np.asarray(rows, dtype=np.int32).reshape(-1), "answer": answers, "category": categories, "family": families}, unknown


def object_table(path: Path, scenes: list[dict], rows: list[int]) -> dict[str, np.ndarray]:
    """State descriptions: per image row, up to 10 objects of 18 features: x, y, z, then one-hot
    size, color, material, shape (``ATTRIBUTES`` order)."""
    row_of = {index: row for row, index in enumerate(rows)}
    objects = np.zeros((len(rows), MAX_OBJECTS, OBJECT_FEATURES), dtype=np.float32)
    counts = np.zeros(len(rows), dtype=np.int8)
    for position, scene in enumerate(scenes):
        try:
            index = row_of[int(scene["image_index"])]
            if len(scene["objects"]) > MAX_OBJECTS:
                raise ValueError(f"{len(scene['objects'])} objects; at most {MAX_OBJECTS} are supported")
            for slot, obj in enumerate(scene["objects"]):
                objects[index, slot, :3] = obj["3d_coords"]
                offset = 3
                for attribute, values in ATTRIBUTES.items():
                    objects[index, slot, offset + values.index(obj[attribute])] = 1
                    offset += len(values)
            counts[index] = len(scene["objects"])
        except (KeyError, TypeError, ValueError, OverflowError) as error:
            raise DataError(f"{path}: scene {position} is malformed ({error!r}); expected objects with 3d_coords, "
                            f"color, shape, material and size") from error
    return {"objects": objects, "object_count": counts}


def _load_image(job) -> np.ndarray:
    paths, size = job
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for row, path in enumerate(paths):
        out[row] = read_image(path, size, str(path))
    return out


def images_fingerprint(paths: list[Path], size: int) -> str:
    """What a split's cached images are derived from: every source image's name, size and
    modification time, and the image size."""
    digest = hashlib.sha256(f"{size}\n".encode())
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DataError(f"{path}: image missing") from None
        digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _resumable(partial: Path, progress_file: Path, shape: tuple, fingerprint: str) -> int:
    """Images already in ``partial`` from an interrupted run on the same sources, else 0."""
    if not (partial.exists() and progress_file.exists()) or partial.is_symlink() or not partial.is_file():
        return 0
    try:
        state = read_json_file(progress_file, "image-caching progress file")
        done = int(state["images_done"])
    except (DataError, KeyError, TypeError, ValueError):
        return 0  # derived and re-creatable: start over rather than trust it
    if (tuple(state.get("shape", ())) != shape or state.get("fingerprint") != fingerprint
            or not 0 < done <= shape[0] or partial.stat().st_size != _npy_data_offset(partial) + int(np.prod(shape))):
        return 0  # other sources, or a truncated file that numpy would silently extend with zeros
    return done


def _npy_data_offset(path: Path) -> int:
    """Where the data of a .npy file begins (the size of its header), or -1 if it has none."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(file)
            return file.tell()
    except (OSError, ValueError):
        return -1


def cache_images(paths: list[Path], out: Path, size: int, workers: int, progress: bool, chunk: int = 64,
                 fingerprint: str | None = None) -> None:
    """Resized images into ``out`` (.npy) with their fingerprint beside it, resuming a previous
    interrupted run on the same sources. A run refused or stopped after a chunk leaves the partial
    file and its progress record to resume from; one stopped before the first chunk leaves neither."""
    from tqdm import tqdm

    partial = out.with_name(out.stem + ".partial.npy")
    progress_file = out.with_name(out.stem + ".progress.json")
    shape = (len(paths), size, size, 3)
    fingerprint = fingerprint or images_fingerprint(paths, size)
    done = _resumable(partial, progress_file, shape, fingerprint)
    if done == 0:
        partial.unlink(missing_ok=True)  # a new file, never one planted there (a link would be written through)
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
        write_json(progress_file, {"shape": list(shape), "images_done": done, "fingerprint": fingerprint})
        bar.update(len(block))

    try:
        if workers > 1 and len(jobs) > 1:
            with get_context("spawn").Pool(workers) as pool:
                for block in pool.imap(_load_image, jobs):
                    store(block)
        else:
            for job in jobs:
                store(_load_image(job))
    except BaseException:  # a refused image, a Ctrl-C
        if done == 0:  # before any chunk: nothing to resume, so no full-size file (or stale record) stays
            partial.unlink(missing_ok=True)
            progress_file.unlink(missing_ok=True)
        raise
    bar.close()
    array.flush()
    partial.replace(out)
    write_json(_images_record(out), {"fingerprint": fingerprint, "shape": list(shape)})
    progress_file.unlink(missing_ok=True)


def _images_record(images: Path) -> Path:
    return images.with_suffix(".json")


def _cached_images_match(out: Path, fingerprint: str) -> bool:
    record = _images_record(out)
    if not (out.exists() and record.exists()):
        return False
    try:
        stored = read_json_file(record, "image fingerprint")
    except DataError:
        return False
    return isinstance(stored, dict) and stored.get("fingerprint") == fingerprint


def prepare(clevr_dir: Path, out: Path, splits=None, size: int = 128, workers: int = 1, progress: bool = True,
            images: bool = True) -> list[Path]:
    """Build the cache of every split of ``clevr_dir`` that has a question file (or of ``splits``);
    without ``images``, a state-only cache (questions and object tables; no image is read).

    Every input is read and checked before anything is written; the manifest goes first and comes
    back last, so an interrupted or failed run leaves a cache that loading refuses, not one that
    mixes two builds. Two runs on one cache directory are refused (a lock)."""
    if not clevr_dir.is_dir():
        raise DataError(f"{clevr_dir}: no such directory; expected CLEVR_v1.0/ with images/, questions/, scenes/")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file of that name exists; expected a cache directory")
    splits = [check_split_name(split, "--splits") for split in splits] if splits else \
        [s for s in SPLITS if _question_file(clevr_dir, s).exists()]
    if not splits:
        raise DataError(f"{clevr_dir}: no questions/CLEVR_{{train,val,test}}_questions.json found")
    with directory_lock(out, "relnet data clevr"):
        return _prepare_locked(clevr_dir, out, splits, size, workers, progress, images)


def _prepare_locked(clevr_dir, out, splits, size, workers, progress, images) -> list[Path]:
    # Rebuilding train makes a new vocabulary, and with it a new cache, as does a first build; otherwise
    # the splits rebuilt replace theirs in the cache's manifest.
    previous = _read_manifest(out) if "train" not in splits and (out / MANIFEST).exists() else None
    build = uuid.uuid4().hex
    sources = {split: _read_split(clevr_dir, split, images) for split in splits}  # everything checked before writing
    for source in sources.values():
        # Every image present before anything changes; the one stat of each image the run needs.
        source["fingerprint"] = images_fingerprint(source["images"], size) if images else None
    vocab = _vocabulary(sources, out, size, build) if previous is not None else _new_vocabulary(sources, size, build)
    word_index = {word: i for i, word in enumerate(vocab["words"])}
    encoded = {}
    for split, source in sources.items():
        arrays, unknown = encode_questions(source["path"], source["questions"], word_index, source["rows"])
        if unknown:
            print(f"warning: {split}: {unknown} question words are not in the cache's vocabulary; encoded as {UNK}",
                  file=sys.stderr)
        encoded[split] = {**arrays, "build": _id_array(build), "vocab": _id_array(vocab["build"])}
        if source["scenes"] is not None:  # built now, so that a bad scene stops the run before it writes
            source["objects"] = {**object_table(source["scenes_path"], source["scenes"], source["rows"]),
                                 "build": _id_array(build)}

    # Until the manifest is rewritten at the end, it names the files of the previous build: a
    # file already replaced by this build no longer matches it, so an interrupted run leaves a
    # cache whose untouched splits still load and whose others are refused, never mixed.
    if previous is not None:  # the splits being rebuilt leave the cache now
        previous["splits"] = {split: entry for split, entry in previous["splits"].items() if split not in sources}
        write_json(out / MANIFEST, previous)
    manifest = previous if previous is not None else {"format": CACHE_FORMAT, "image_size": size, "splits": {}}
    manifest["vocab"] = vocab["build"]
    written = []
    for split, source in sources.items():
        manifest["splits"][split] = _write_split(out, split, source, encoded[split], build, size, workers, progress)
        written += [out / f"{split}_images.npy"] if images else []
        written += [out / f"{split}_questions.npz"]
        written += [out / f"{split}_objects.npz"] if source["scenes"] is not None else []
    if previous is None:
        write_json(out / "vocab.json", vocab)
        written.insert(0, out / "vocab.json")
    write_json(out / MANIFEST, manifest)
    return written


def _new_vocabulary(sources: dict, size: int, build: str) -> dict:
    """The train split's words; without train (a val-only folder to evaluate a model on), the words
    of the splits cached: a trained model re-numbers them into its own vocabulary when it reads them."""
    words = sorted({word for split, source in sources.items() if split == "train" or "train" not in sources
                    for q in source["questions"] for word in tokenize(q.get("question", ""))})
    return {"words": [PAD, UNK, *words], "answers": list(ANSWERS), "categories": list(CATEGORIES),
            "image_size": size, "build": build}


def _vocabulary(sources: dict, out: Path, size: int, build: str) -> dict:
    """The vocabulary of the cache in ``out``, into which splits other than train are rebuilt."""
    vocab = read_vocab(out)
    if vocab["image_size"] != size:
        raise ConfigError(f"{out / 'vocab.json'}: the cache holds {vocab['image_size']}-pixel images; pass "
                          f"--image-size {vocab['image_size']} or rebuild it with train")
    return vocab


def _write_split(out: Path, split: str, source: dict, encoded: dict, build: str, size: int, workers: int,
                 progress: bool) -> dict:
    """A split's images (re-cached only when their sources or size changed), questions and object
    tables; returns its manifest entry."""
    image_out = out / f"{split}_images.npy"
    if source["images"] is None:  # a state-only cache holds no images, not stale ones
        image_out.unlink(missing_ok=True)
        _images_record(image_out).unlink(missing_ok=True)
    elif not _cached_images_match(image_out, source["fingerprint"]):
        cache_images(source["images"], image_out, size, workers, progress, fingerprint=source["fingerprint"])
    save_npz(out / f"{split}_questions.npz", encoded)
    objects_path = out / f"{split}_objects.npz"
    if source["scenes"] is not None:
        save_npz(objects_path, source["objects"])
    else:
        objects_path.unlink(missing_ok=True)
    return {"build": build, "images": source["fingerprint"], "objects": source["scenes"] is not None}


def _read_split(clevr_dir: Path, split: str, with_images: bool = True) -> dict:
    """A split's questions and scenes, read and checked, its image rows and their paths (None
    without images)."""
    path = _question_file(clevr_dir, split)
    questions = read_questions(path)
    scenes_path = clevr_dir / "scenes" / f"CLEVR_{split}_scenes.json"
    scenes = read_scenes(scenes_path) if scenes_path.exists() else None
    if scenes is not None:
        held = {scene["image_index"] for scene in scenes}
        missing = next((q for q in questions if q["image_index"] not in held), None)
        if missing is not None:
            raise DataError(f"{path}: a question is about image_index {missing['image_index']}, which "
                            f"{scenes_path} does not hold")
    rows = image_rows(questions, scenes)
    paths = [clevr_dir / "images" / split / name for name in _image_filenames(split, rows, questions, scenes)] \
        if with_images else None
    return {"path": path, "questions": questions, "scenes": scenes, "scenes_path": scenes_path, "rows": rows,
            "images": paths}


def _image_filenames(split: str, rows: list[int], questions: list[dict], scenes: list[dict] | None) -> list[str]:
    """Each row's file: the scene's ``image_filename``, else a question's, else CLEVR's pattern."""
    named = {q["image_index"]: q["image_filename"] for q in questions if "image_filename" in q}
    named.update({scene["image_index"]: scene["image_filename"] for scene in scenes or [] if "image_filename" in scene})
    return [named.get(index, f"CLEVR_{split}_{index:06d}.png") for index in rows]


def _id_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8).copy()


def _read_manifest(cache: Path) -> dict:
    """The cache's manifest (its callers have checked that it exists), checked for its format."""
    manifest = read_json_file(cache / MANIFEST, "cache manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT or not isinstance(
            manifest.get("splits"), dict):
        raise DataError(f"{cache / MANIFEST}: not a relnet CLEVR cache manifest of format {CACHE_FORMAT}; {HOW_TO_MAKE}")
    return manifest


def load_cache(cache: Path, split: str, with_images: bool, with_objects: bool) -> dict[str, np.ndarray]:
    """One split of the cache as arrays, checked against the manifest, for types and for values in range."""
    if not (cache / MANIFEST).exists():
        if (cache / "vocab.json").exists():
            raise DataError(f"{cache}: incomplete cache (no {MANIFEST}: a `relnet data clevr` run stopped or failed "
                            f"midway, or it predates relnet {CACHE_FORMAT}-format caches); {HOW_TO_MAKE}")
        raise DataError(f"{cache / MANIFEST}: no such file; {HOW_TO_MAKE}")
    manifest = _read_manifest(cache)
    entry = manifest["splits"].get(split)
    if not isinstance(entry, dict):
        raise DataError(f"{cache}: the cache has no {split} split (it holds {', '.join(manifest['splits']) or 'none'}); "
                        f"{HOW_TO_MAKE}")
    vocab = read_vocab(cache)
    path = cache / f"{split}_questions.npz"
    arrays = load_npz(path, ("tokens", "lengths", "image_index", "image_ids", "answer", "category", "family", "build",
                             "vocab"), HOW_TO_MAKE)
    _check_build(path, arrays.pop("build"), entry.get("build"))
    _check_build(path, arrays.pop("vocab"), vocab["build"])
    image_ids = arrays.pop("image_ids")
    _check_question_values(path, arrays, len(vocab["words"]))
    images = len(image_ids)
    if not (np.issubdtype(image_ids.dtype, np.integer) and image_ids.ndim == 1) or \
            (len(arrays["image_index"]) and arrays["image_index"].max() >= images):
        raise DataError(f"{path}: image_ids must list one CLEVR image_index per image row, and every question's "
                        f"image row must be among them; {HOW_TO_MAKE}")
    if with_images and entry.get("images") is None:
        raise DataError(f"{cache}: a state-only cache (built with --no-images): the {split} split holds no images; "
                        f"pixel models need `relnet data clevr` without --no-images")
    if with_images:
        arrays["images"] = _load_images(cache / f"{split}_images.npy", entry, images, vocab["image_size"])
    if with_objects:
        if not entry.get("objects"):
            raise DataError(f"{cache}: the {split} split has no object tables (its CLEVR_{split}_scenes.json was "
                            f"absent); state descriptions need the scenes")
        arrays.update(_load_objects(cache / f"{split}_objects.npz", entry, images))
    return arrays


def _check_build(path: Path, stored: np.ndarray, expected) -> None:
    if stored.dtype != np.uint8 or stored.ndim != 1 or _text(stored) != expected:
        raise DataError(f"{path}: written by another build of the cache than {path.parent / MANIFEST} names; "
                        f"{HOW_TO_MAKE}")


def _load_images(path: Path, entry: dict, images: int, size: int) -> np.ndarray:
    record_path = _images_record(path)
    record = read_json_file(record_path, "image fingerprint") if record_path.is_file() else {}
    if not path.is_file() or not isinstance(record, dict) or record.get("fingerprint") != entry.get("images"):
        raise DataError(f"{path}: missing or not the images {path.parent / MANIFEST} names; {HOW_TO_MAKE}")
    try:  # the header first: a memory map allocates nothing and needs the file to hold what it declares
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        if mapped.ndim != 4 or mapped.shape[0] < images or mapped.shape[1:] != (size, size, 3) or mapped.dtype != np.uint8:
            raise DataError(f"{path}: expected uint8 [>= {images}, {size}, {size}, 3] (vocab.json's image size), got "
                            f"{mapped.dtype} {mapped.shape}")
        return np.array(mapped)
    except (OSError, ValueError, EOFError, MemoryError) as error:
        raise DataError(f"{path}: not a readable .npy array ({type(error).__name__}: {error}); {HOW_TO_MAKE}") from None


def _load_objects(path: Path, entry: dict, images: int) -> dict[str, np.ndarray]:
    objects = load_npz(path, ("objects", "object_count", "build"), HOW_TO_MAKE)
    _check_build(path, objects.pop("build"), entry.get("build"))
    table, count = objects["objects"], objects["object_count"]
    if table.dtype != np.float32 or table.ndim != 3 or table.shape[0] < images or \
            table.shape[1:] != (MAX_OBJECTS, OBJECT_FEATURES):
        raise DataError(f"{path}: expected float32 objects [>= {images}, {MAX_OBJECTS}, {OBJECT_FEATURES}], got "
                        f"{table.dtype} {table.shape}")
    if not np.issubdtype(count.dtype, np.integer) or count.shape != table.shape[:1] or \
            (count.size and not 0 <= count.min() <= count.max() <= MAX_OBJECTS):
        raise DataError(f"{path}: object_count must hold one count from 0 to {MAX_OBJECTS} per image")
    if not np.isfinite(table).all():
        raise DataError(f"{path}: object tables hold NaN or infinite values")
    return objects


def _text(array: np.ndarray) -> str:
    return bytes(np.asarray(array, dtype=np.uint8)).decode(errors="replace")


def _check_question_values(path: Path, arrays: dict, vocab_size: int) -> None:
    """Whole numbers of the right shapes, every index in range: a cache edited or damaged by hand is
    refused, never gathered out of bounds or silently truncated."""
    for key, array in arrays.items():
        if not np.issubdtype(array.dtype, np.integer) or array.ndim != (2 if key == "tokens" else 1):
            raise DataError(f"{path}: {key} is {array.dtype} with {array.ndim} dimensions; expected whole numbers, "
                            f"{'[questions, words]' if key == 'tokens' else 'one per question'}")
    tokens = arrays["tokens"]
    ranges = {"tokens": (0, vocab_size - 1), "lengths": (0, tokens.shape[1]), "image_index": (0, 10 ** 7),
              "answer": (-1, len(ANSWERS) - 1), "category": (-1, len(CATEGORIES) - 1), "family": (-1, 10 ** 4)}
    for key, (low, high) in ranges.items():
        array = arrays[key]
        if key != "tokens" and array.shape != (len(tokens),):
            raise DataError(f"{path}: {key} holds {array.shape[0]} values for {len(tokens)} questions")
        if array.size and not low <= array.min() <= array.max() <= high:
            raise DataError(f"{path}: {key} out of range; expected values in {low}..{high}")


def read_vocab(cache: Path) -> dict:
    vocab = read_json_file(cache / "vocab.json", f"CLEVR cache vocabulary; {HOW_TO_MAKE}")
    words = vocab.get("words") if isinstance(vocab, dict) else None
    if (not isinstance(words, list) or words[:2] != [PAD, UNK] or not all(isinstance(w, str) for w in words)
            or not isinstance(vocab.get("image_size"), int) or not 8 <= vocab["image_size"] <= 1024
            or not isinstance(vocab.get("build"), str)):
        raise DataError(f"{cache / 'vocab.json'}: not a relnet CLEVR vocabulary (words starting {PAD}, {UNK}; "
                        f"image_size; build); {HOW_TO_MAKE}")
    return vocab
