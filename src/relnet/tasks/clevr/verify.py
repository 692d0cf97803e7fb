"""`relnet data clevr-verify`: run every question's program on its scene and compare answers."""

from __future__ import annotations

from pathlib import Path

from relnet.errors import DataError
from relnet.tasks.clevr.files import check_split_name, read_questions, read_scenes
from relnet.tasks.clevr.program import ProgramError, answer_text, execute


def verify(clevr_dir: Path, split: str, max_failures: int = 20) -> dict:
    """How many questions of ``split`` reproduce their stored answer on their scene."""
    check_split_name(split, "--split")
    questions_path = clevr_dir / "questions" / f"CLEVR_{split}_questions.json"
    scenes_path = clevr_dir / "scenes" / f"CLEVR_{split}_scenes.json"
    questions = read_questions(questions_path)
    scenes = {scene["image_index"]: scene for scene in read_scenes(scenes_path)}
    checked = matched = 0
    failures = []
    for position, question in enumerate(questions):
        if "answer" not in question or "program" not in question:
            raise DataError(f"{questions_path}: question {position} has no answer or program "
                            f"(the test split of CLEVR has none, so it cannot be verified)")
        scene = scenes.get(question.get("image_index"))
        if scene is None:
            raise DataError(f"{questions_path}: question {position} refers to image_index "
                            f"{question.get('image_index')!r}, which {scenes_path} does not hold")
        checked += 1
        try:
            got = answer_text(execute(question["program"], scene))
        except (ProgramError, KeyError, TypeError, ValueError, IndexError) as error:
            got = f"error: {error}"
        if got == question["answer"]:
            matched += 1
        elif len(failures) < max_failures:
            failures.append({"question_index": question.get("question_index", position),
                             "question": question.get("question"), "answer": question["answer"], "executed": got})
    return {"split": split, "questions": checked, "matched": matched,
            "accuracy": matched / checked if checked else None, "failures_shown": failures,
            "failures": checked - matched}
