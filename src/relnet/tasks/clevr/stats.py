"""`relnet data clevr-stats`: scene and question statistics of one split of a CLEVR-format folder.

Reads ``DIR/scenes/CLEVR_{split}_scenes.json`` and ``DIR/questions/CLEVR_{split}_questions.json``
(either may be absent) with the checked readers of ``files.py`` and reports plain, JSON-able
numbers: objects per scene, attribute shares, the heights (z) objects rest at, coordinate and
rotation ranges, and, where questions exist, categories, answers, families and question length.
``compare_table`` sets two such reports side by side (e.g. generated data against real CLEVR).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from relnet.errors import DataError
from relnet.tasks.clevr.files import check_split_name, read_questions, read_scenes
from relnet.tasks.clevr.schema import ATTRIBUTES, CATEGORIES, category_of

OBJECT_COUNTS = range(3, 11)  # CLEVR's scenes hold 3 to 10 objects
TOP_ANSWERS = 5
Z_DECIMALS = 3  # z values are reported rounded (CLEVR stores 0.699999988 for 0.7)
MAX_Z_VALUES = 8  # distinct z values listed per shape and size; more are summarized by min/max
ATTRIBUTE_ORDER = ("shape", "color", "material", "size")


def split_paths(clevr_dir: Path, split: str) -> tuple[Path, Path]:
    """The scene and question file of ``split`` in ``clevr_dir``."""
    return (clevr_dir / "scenes" / f"CLEVR_{split}_scenes.json",
            clevr_dir / "questions" / f"CLEVR_{split}_questions.json")


def scene_statistics(clevr_dir, split: str = "train", option: str = "--split") -> dict:
    """Statistics of the scenes and questions of ``split`` in ``clevr_dir`` as a JSON-able dict;
    a DataError when neither file exists or either is malformed (``option``: the option that
    named the split, for the error about a split name that is not allowed)."""
    clevr_dir = Path(clevr_dir)
    check_split_name(split, option)
    if not clevr_dir.is_dir():
        raise DataError(f"{clevr_dir}: no such directory; expected a CLEVR-format folder with scenes/ or questions/")
    scenes_path, questions_path = split_paths(clevr_dir, split)
    has_scenes, has_questions = scenes_path.exists(), questions_path.exists()
    if not has_scenes and not has_questions:
        raise DataError(f"{clevr_dir}: no split {split!r}: expected scenes/CLEVR_{split}_scenes.json or "
                        f"questions/CLEVR_{split}_questions.json")
    stats = {"clevr_dir": str(clevr_dir), "split": split,
             "scenes_file": str(scenes_path) if has_scenes else None,
             "questions_file": str(questions_path) if has_questions else None,
             "scenes": None, "questions": None}
    if has_scenes:
        stats["scenes"] = _scene_part(scenes_path, read_scenes(scenes_path))
    if has_questions:
        stats["questions"] = _question_part(questions_path, read_questions(questions_path))
    return stats


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _range(values) -> dict:
    values = list(values)
    if not values:
        return {"min": None, "max": None, "mean": None}
    return {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}


def _scene_part(path: Path, scenes: list[dict]) -> dict:
    objects = [obj for scene in scenes for obj in scene["objects"]]
    counts = Counter(len(scene["objects"]) for scene in scenes)
    sizes = range(min([*counts, OBJECT_COUNTS.start]), max([*counts, OBJECT_COUNTS.stop - 1]) + 1)
    attributes = {}
    for attribute in ATTRIBUTE_ORDER:
        seen = Counter(obj[attribute] for obj in objects)
        attributes[attribute] = {value: _share(seen[value], len(objects)) for value in ATTRIBUTES[attribute]}
    z = {}
    for shape in ATTRIBUTES["shape"]:
        for size in ATTRIBUTES["size"]:
            heights = [obj["3d_coords"][2] for obj in objects if obj["shape"] == shape and obj["size"] == size]
            if heights:
                distinct = sorted({round(h, Z_DECIMALS) for h in heights})
                z.setdefault(shape, {})[size] = {"objects": len(heights), "distinct": len(distinct),
                                                 "values": distinct[:MAX_Z_VALUES],
                                                 "min": min(heights), "max": max(heights)}
    rotations = []
    for position, scene in enumerate(scenes):
        for slot, obj in enumerate(scene["objects"]):
            if "rotation" in obj:
                rotation = obj["rotation"]
                if (not isinstance(rotation, (int, float)) or isinstance(rotation, bool)
                        or not math.isfinite(rotation) or abs(rotation) > 1e6):
                    raise DataError(f"{path}: scene {position}, object {slot}: rotation {str(rotation)[:40]} is not "
                                    f"a finite number of at most 1e+06 in size")
                rotations.append(float(rotation))
    return {
        "scenes": len(scenes),
        "objects": len(objects),
        "objects_per_scene": {"mean": _mean(len(scene["objects"]) for scene in scenes),
                              "min": min(counts) if counts else None, "max": max(counts) if counts else None,
                              "shares": {str(n): _share(counts[n], len(scenes)) for n in sizes}},
        "attributes": attributes,
        "z": z,
        "x": _range(obj["3d_coords"][0] for obj in objects),
        "y": _range(obj["3d_coords"][1] for obj in objects),
        "rotation": {**_range(rotations), "objects": len(rotations)},
    }


def _question_part(path: Path, questions: list[dict]) -> dict:
    by_category: dict[str, Counter] = {category: Counter() for category in CATEGORIES}
    without_program = 0
    for position, question in enumerate(questions):
        if "program" not in question:
            without_program += 1
            continue
        last = question["program"][-1]
        try:
            category = category_of(last.get("function", last.get("type")))
        except ValueError as error:
            raise DataError(f"{path}: question {position}: {error}") from None
        by_category[category][question.get("answer")] += 1  # None: a question without an answer
    categorized = sum(sum(answers.values()) for answers in by_category.values())
    categories = {}
    for category, answers in by_category.items():
        total = sum(answers.values())
        answered = Counter({answer: n for answer, n in answers.items() if answer is not None})
        top = sorted(answered.items(), key=lambda item: (-item[1], item[0]))[:TOP_ANSWERS]
        categories[category] = {
            "questions": total, "share": _share(total, categorized), "answers": len(answered),
            "top_answers": [{"answer": answer, "share": _share(n, sum(answered.values()))} for answer, n in top],
            "majority_share": _share(top[0][1], sum(answered.values())) if top else None}
    images = {question["image_index"] for question in questions}
    return {
        "questions": len(questions),
        "images": len(images),
        "questions_per_image": _share(len(questions), len(images)),
        "without_program": without_program,
        "categories": categories,
        "families": len({question.get("question_family_index") for question in questions
                         if "question_family_index" in question}),
        "mean_words": _mean(len(question.get("question", "").split()) for question in questions),
    }


# ---------------------------------------------------------------- text


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _span(part: dict) -> str:
    return "-" if part["min"] is None else f"{part['min']:.2f} to {part['max']:.2f} (mean {part['mean']:.2f})"


def _z_text(entry: dict) -> str:
    values = ", ".join(f"{v:g}" for v in entry["values"])
    more = f" ... ({entry['distinct']} distinct, {entry['min']:.3f} to {entry['max']:.3f})" \
        if entry["distinct"] > len(entry["values"]) else ""
    return values + more


def format_statistics(stats: dict) -> str:
    """A readable text report of ``scene_statistics``."""
    lines = [f"{stats['clevr_dir']} (split {stats['split']})"]
    scenes = stats["scenes"]
    if scenes is None:
        lines.append("scenes: none (no scene file)")
    else:
        per = scenes["objects_per_scene"]
        lines += [f"scenes: {scenes['scenes']}   objects: {scenes['objects']}",
                  f"objects per scene: mean {_num(per['mean'], 2)}, min {per['min']}, max {per['max']}",
                  "  " + "  ".join(f"{n}: {_pct(share)}" for n, share in per["shares"].items())]
        lines.append("attributes (share of objects):")
        for attribute, shares in scenes["attributes"].items():
            lines.append(f"  {attribute:<9}" + "  ".join(f"{value} {_pct(share)}" for value, share in shares.items()))
        lines.append("z (height of the object's centre) by shape and size:")
        for shape, by_size in scenes["z"].items():
            for size, entry in by_size.items():
                lines.append(f"  {shape:<9}{size:<6} {_z_text(entry)}   ({entry['objects']} objects)")
        lines += [f"x: {_span(scenes['x'])}", f"y: {_span(scenes['y'])}",
                  f"rotation: {_span(scenes['rotation'])}" if scenes["rotation"]["objects"] else "rotation: none given"]
    questions = stats["questions"]
    if questions is None:
        lines.append("questions: none (no question file)")
        return "\n".join(lines)
    lines.append(f"questions: {questions['questions']} on {questions['images']} images "
                 f"({_num(questions['questions_per_image'], 2)} per image), {questions['families']} families, "
                 f"mean length {_num(questions['mean_words'], 1)} words")
    if questions["without_program"]:
        lines.append(f"  {questions['without_program']} without a program (no category)")
    lines.append(f"  {'category':<19}{'questions':>10}{'share':>8}{'majority':>10}  top answers")
    for category, row in questions["categories"].items():
        top = ", ".join(f"{entry['answer']} {_pct(entry['share'])}" for entry in row["top_answers"])
        lines.append(f"  {category:<19}{row['questions']:>10}{_pct(row['share']):>8}{_pct(row['majority_share']):>10}"
                     f"  {top or '-'}")
    return "\n".join(lines)


# ---------------------------------------------------------------- side by side


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def compare_table(stats_a: dict, stats_b: dict, names=None) -> str:
    """A Markdown table with two ``scene_statistics`` reports side by side."""
    if names is None:
        names = (stats_a["clevr_dir"], stats_b["clevr_dir"])
    rows: list[tuple[str, str, str]] = []

    def row(label: str, get, fmt) -> None:
        values = []
        for stats in (stats_a, stats_b):
            try:
                value = get(stats)
            except (KeyError, TypeError):  # a report without scenes or questions, a z never seen
                value = None
            values.append("-" if value is None else fmt(value))
        rows.append((label, *values))

    row("split", lambda s: s["split"], str)
    row("scenes", lambda s: s["scenes"]["scenes"], str)
    row("objects", lambda s: s["scenes"]["objects"], str)
    row("mean objects per scene", lambda s: s["scenes"]["objects_per_scene"]["mean"], lambda v: f"{v:.2f}")
    counts = []
    for stats in (stats_a, stats_b):
        if stats["scenes"] is not None:
            counts += [n for n in stats["scenes"]["objects_per_scene"]["shares"] if n not in counts]
    for n in sorted(counts, key=int):
        row(f"scenes with {n} objects", lambda s, n=n: s["scenes"]["objects_per_scene"]["shares"][n], _pct)
    for attribute in ATTRIBUTE_ORDER:
        for value in ATTRIBUTES[attribute]:
            row(f"{attribute} {value}", lambda s, a=attribute, v=value: s["scenes"]["attributes"][a][v], _pct)
    for size in ATTRIBUTES["size"]:
        row(f"z of {size} cubes", lambda s, size=size: s["scenes"]["z"]["cube"][size], _z_text)
    for axis in ("x", "y"):
        row(f"{axis} range", lambda s, axis=axis: s["scenes"][axis] if s["scenes"][axis]["min"] is not None else None,
            lambda part: f"{part['min']:.2f} to {part['max']:.2f}")
        row(f"{axis} mean", lambda s, axis=axis: s["scenes"][axis]["mean"], lambda v: f"{v:.2f}")
    row("rotation range", lambda s: s["scenes"]["rotation"] if s["scenes"]["rotation"]["objects"] else None,
        lambda part: f"{part['min']:.1f} to {part['max']:.1f}")
    if stats_a["questions"] is not None and stats_b["questions"] is not None:
        row("questions", lambda s: s["questions"]["questions"], str)
        row("questions per image", lambda s: s["questions"]["questions_per_image"], lambda v: f"{v:.2f}")
        for category in CATEGORIES:
            row(f"{category} questions", lambda s, c=category: s["questions"]["categories"][c]["share"], _pct)
        for category in CATEGORIES:
            row(f"{category} majority answer",
                lambda s, c=category: s["questions"]["categories"][c]["majority_share"], _pct)
        row("families", lambda s: s["questions"]["families"], str)
        row("mean words per question", lambda s: s["questions"]["mean_words"], lambda v: f"{v:.1f}")
    lines = [f"| | {_cell(str(names[0]))} | {_cell(str(names[1]))} |", "|---|---:|---:|"]
    lines += [f"| {label} | {_cell(a)} | {_cell(b)} |" for label, a, b in rows]
    return "\n".join(lines)
