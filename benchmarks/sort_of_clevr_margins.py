"""A Sort-of-CLEVR model's closest/furthest accuracy by how far apart the distances it must order are.

    python benchmarks/sort_of_clevr_margins.py pretrained:sort-of-clevr-pixels --data DATA
    python benchmarks/sort_of_clevr_margins.py RUN_DIR --data DATA --split train

For every closest (furthest) question about object X the margin is, in pixels, how much nearer
(further) the answer object is than the nearest (furthest) object of the other shape: the
question is asked only when it is at least 1 px (generate.AMBIGUITY_MARGIN), and it is infinite
when every other object has the answer's shape. A model that
orders distances to within a few pixels fails only the small margins; errors spread over every
margin point elsewhere (memorized training images, a wrong object found). Prints a Markdown
table of accuracy by margin and writes it as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from relnet.pretrained import load_trained  # noqa: E402
from relnet.tasks.sort_of_clevr.generate import KINDS, SUBTYPES  # noqa: E402
from relnet.train.loop import predict  # noqa: E402

EDGES = (1, 2, 3, 4, 6, 8, 12, np.inf)  # pixel margins, bucket edges
ASKED = {"closest": SUBTYPES["binary"].index("closest_shape"), "furthest": SUBTYPES["binary"].index("furthest_shape")}


def margins(shape: np.ndarray, xy: np.ndarray, image: np.ndarray, x: np.ndarray, closest: bool) -> np.ndarray:
    """Per question: distance of the nearest (furthest) object of the other shape than the
    answer's, minus the answer's distance (for furthest, the other way round), in pixels."""
    distance = np.sqrt(((xy[image] - xy[image, x][:, None]).astype(float) ** 2).sum(axis=-1))  # [Q, 6]: from X
    distance[np.arange(len(x)), x] = np.inf if closest else -np.inf
    answer = distance.argmin(1) if closest else distance.argmax(1)
    other = shape[image] != shape[image, answer][:, None]
    best = distance[np.arange(len(x)), answer]
    if closest:
        return np.where(other, distance, np.inf).min(1) - best
    return best - np.where(other, distance, -np.inf).max(1)


def buckets(margin: np.ndarray) -> np.ndarray:
    """The bucket [EDGES[k], EDGES[k + 1]) of each margin; the last one holds the infinite margins too
    (no other object has the other shape)."""
    return np.minimum(np.searchsorted(EDGES, margin, side="right") - 1, len(EDGES) - 2)


def table(spec: str, data: Path, split_name: str) -> dict:
    task, preset, info, model = load_trained(spec)
    split = task.load(data, split_name, preset, info)
    predictions = predict(task, model, split, preset.eval_batch_size, "cpu", progress=False).numpy()
    arrays = np.load(data / f"{split_name}.npz")
    kept = np.isin(arrays["q_kind"], [KINDS.index(kind) for kind in preset.data.get("kinds", KINDS)])
    kind, subtype = arrays["q_kind"][kept], arrays["q_subtype"][kept]
    image, x, answer = arrays["q_image"][kept], arrays["q_color"][kept][:, 0], arrays["answer"][kept]
    rows = {}
    for name, index in ASKED.items():
        asked = (kind == KINDS.index("binary")) & (subtype == index)
        margin = margins(arrays["object_shape"], arrays["object_xy"], image[asked], x[asked], name == "closest")
        right = predictions[asked] == answer[asked]
        bucket = buckets(margin)
        rows[name] = [{"margin": f"[{low:g}, {high:g})" if high < np.inf else f">= {low:g}",
                       "questions": int(inside.sum()), "accuracy": float(right[inside].mean()) if inside.any() else None,
                       "errors": int((~right[inside]).sum())}
                      for number, (low, high) in enumerate(zip(EDGES, EDGES[1:])) for inside in [bucket == number]]
    return rows


def markdown(rows: dict) -> str:
    lines = ["| margin (px) | " + " | ".join(f"{name}: questions | accuracy | share of errors" for name in rows) + " |",
             "|---|" + "---|---|---|" * len(rows)]
    totals = {name: sum(row["errors"] for row in buckets) or 1 for name, buckets in rows.items()}
    for position, first in enumerate(next(iter(rows.values()))):
        cells = []
        for name, buckets in rows.items():
            row = buckets[position]
            accuracy = "" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
            cells.append(f"{row['questions']} | {accuracy} | {100 * row['errors'] / totals[name]:.0f}%")
        lines.append(f"| {first['margin']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="pretrained:NAME, an exported NAME.safetensors or a run directory")
    parser.add_argument("--data", type=Path, required=True, help="Sort-of-CLEVR directory (relnet data sort-of-clevr)")
    parser.add_argument("--split", default="test", choices=["train", "test"])
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    rows = table(args.model, args.data, args.split)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
