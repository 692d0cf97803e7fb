"""Reading CLEVR-format files (scenes, questions), validated once for every command.

Every reader of a scene or question file goes through here, so a malformed or hostile file gets
one DataError naming the file, the entry and what was expected, never a traceback, a NaN in
training, or a file name taken unchecked from its contents.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from relnet.errors import DataError, shown
from relnet.io import checked_name, read_json_file
from relnet.tasks.clevr.schema import ANSWERS, ATTRIBUTES, RELATIONS

# CLEVR v1.0 has 100,000 images and 90 families; the bounds keep indices far above that and far
# below what would allocate absurd image lists or overflow the cache's integer arrays.
MAX_IMAGE_INDEX = 1_000_000
MAX_FAMILY = 10_000
MAX_COORDINATE = 1e6
MAX_OBJECTS = 10  # CLEVR's scenes hold 3 to 10 objects
MAX_QUESTION_CHARS = 1000  # CLEVR's longest question is under 300 characters
# A scene's image_filename: a plain file name, never a path.
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")


def check_split_name(name, where: str) -> str:
    return checked_name(name, where, "split name")


def read_json(path: Path, key: str) -> dict:
    """A CLEVR JSON file holding a list under ``key``, or a DataError naming the file."""
    data = read_json_file(path, f"CLEVR {key} file (JSON)")
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise DataError(f"{path}: expected a JSON object with a list under {key!r}")
    return data


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _index(value) -> bool:
    return _whole(value) and 0 <= value < MAX_IMAGE_INDEX


def _coordinate(value) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value) and abs(value) <= MAX_COORDINATE
    except OverflowError:  # an integer of hundreds of digits
        return False


def read_scenes(path: Path) -> list[dict]:
    """The scenes of a CLEVR scene file, each checked: a unique whole ``image_index`` >= 0, objects
    with finite 3D coordinates and known attribute values, relationships between real objects."""
    scenes = read_json(path, "scenes")["scenes"]
    seen = set()
    for position, scene in enumerate(scenes):
        where = f"{path}: scene {position}"
        if not isinstance(scene, dict) or not isinstance(scene.get("objects"), list):
            raise DataError(f"{where}: expected an object with a list of objects")
        index = scene.get("image_index")
        if not _index(index):
            raise DataError(f"{where}: image_index {shown(index)} is not a whole number from 0 to "
                            f"{MAX_IMAGE_INDEX - 1:,}")
        if index in seen:
            raise DataError(f"{where}: image_index {index} appears twice")
        seen.add(index)
        if "split" in scene:
            check_split_name(scene["split"], where)
        _check_image_filename(scene, where)
        if len(scene["objects"]) > MAX_OBJECTS:
            raise DataError(f"{where}: {len(scene['objects'])} objects; CLEVR scenes hold at most {MAX_OBJECTS}")
        for slot, obj in enumerate(scene["objects"]):
            _check_object(obj, f"{where}, object {slot}")
        _check_relationships(scene.get("relationships"), len(scene["objects"]), where)
    return scenes


def _check_object(obj, where: str) -> None:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected an object, got {type(obj).__name__}")
    coords = obj.get("3d_coords")
    if not isinstance(coords, list) or len(coords) != 3 or not all(_coordinate(c) for c in coords):
        raise DataError(f"{where}: 3d_coords {str(coords)[:80]} is not three finite numbers of at most "
                        f"{MAX_COORDINATE:g} in size")
    for attribute, values in ATTRIBUTES.items():
        if obj.get(attribute) not in values:
            raise DataError(f"{where}: {attribute} {shown(obj.get(attribute))} is not one of {list(values)}")


def _check_relationships(relationships, count: int, where: str) -> None:
    if relationships is None:
        return
    if not isinstance(relationships, dict) or sorted(relationships) != sorted(RELATIONS):
        raise DataError(f"{where}: relationships must map each of {list(RELATIONS)} to lists")
    for name, rows in relationships.items():
        if name not in RELATIONS or not isinstance(rows, list) or len(rows) != count or not all(
                isinstance(row, list) and all(_whole(k) and 0 <= k < count for k in row) for row in rows):
            raise DataError(f"{where}: relationships[{name!r}] must list, for each of the {count} objects, "
                            f"indices of other objects (0 to {count - 1})")


def _check_image_filename(entry: dict, where: str) -> None:
    filename = entry.get("image_filename")
    if filename is not None and (not isinstance(filename, str) or not FILE_NAME.fullmatch(filename)
                                 or filename in (".", "..")):
        raise DataError(f"{where}: image_filename {shown(filename)} is not a plain file name")


def read_questions(path: Path) -> list[dict]:
    """The questions of a CLEVR question file, each checked: a whole ``image_index`` >= 0, text,
    and where present an answer among CLEVR's 28, a program of well-formed nodes and a family."""
    questions = read_json(path, "questions")["questions"]
    for position, question in enumerate(questions):
        where = f"{path}: question {position}"
        if not isinstance(question, dict):
            raise DataError(f"{where}: expected an object, got {type(question).__name__}")
        index = question.get("image_index")
        if not _index(index):
            raise DataError(f"{where}: image_index {shown(index)} is not a whole number from 0 to "
                            f"{MAX_IMAGE_INDEX - 1:,}")
        _check_image_filename(question, where)
        text = question.get("question", "")
        if not isinstance(text, str) or len(text) > MAX_QUESTION_CHARS:
            raise DataError(f"{where}: question text {shown(str(text))} is not a string of at most "
                            f"{MAX_QUESTION_CHARS} characters")
        if "answer" in question and question["answer"] not in ANSWERS:
            raise DataError(f"{where}: answer {shown(question['answer'])} is not one of CLEVR's 28 answers")
        family = question.get("question_family_index", 0)
        if not _whole(family) or not 0 <= family < MAX_FAMILY:
            raise DataError(f"{where}: question_family_index {shown(family)} is not a whole number from 0 to "
                            f"{MAX_FAMILY - 1}")
        if "program" in question:
            _check_program(question["program"], where)
    return questions


def _check_program(program, where: str) -> None:
    if not isinstance(program, list) or not program:
        raise DataError(f"{where}: program must be a non-empty list of nodes")
    for step, node in enumerate(program):
        function = node.get("function", node.get("type")) if isinstance(node, dict) else None
        inputs = node.get("inputs", []) if isinstance(node, dict) else None
        values = node.get("value_inputs", []) if isinstance(node, dict) else None
        if (not isinstance(function, str) or not isinstance(inputs, list)
                or not all(_whole(k) and 0 <= k < step for k in inputs)
                or not isinstance(values, list) or not all(isinstance(v, str) for v in values)):
            raise DataError(f"{where}: program node {step} must have a function name, inputs among the earlier "
                            f"nodes (0 to {step - 1}) and string value_inputs")
