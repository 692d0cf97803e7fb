"""Generate Sort-of-CLEVR images, questions and answers with NumPy, vectorized over images.

The exact definitions of every question are documented in docs/sort-of-clevr.md.
"""

from __future__ import annotations

import numpy as np

COLORS = ("red", "green", "blue", "orange", "gray", "yellow")
COLOR_RGB = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 156, 0), (128, 128, 128), (255, 255, 0))
SHAPES = ("square", "circle")
ANSWERS = ("yes", "no", "square", "circle", "0", "1", "2", "3", "4", "5", "6")
KINDS = ("non_relational", "binary", "ternary")
SUBTYPES = {
    "non_relational": ("shape", "left", "top"),
    "binary": ("closest_shape", "furthest_shape", "count_same_shape"),
    "ternary": ("count_between", "any_on_line", "count_obtuse"),
}
IMAGE_SIZE = 75
OBJECT_HALF_SIZE = 5
MIN_CENTER_DISTANCE = 15
QUESTIONS_PER_KIND = 10
FORMAT_VERSION = 1

NUM_OBJECTS = len(COLORS)
# Closest/furthest questions whose best and a differently shaped rival distance differ by
# less than this many pixels are ambiguous and never asked.
AMBIGUITY_MARGIN = 1.0
# any_on_line: an object counts as on the line when its center is within this distance.
LINE_DISTANCE = 5
RENDER_CHUNK = 1000

_YES = ANSWERS.index("yes")
_NO = ANSWERS.index("no")
_FIRST_SHAPE_ANSWER = ANSWERS.index("square")
_FIRST_COUNT_ANSWER = ANSWERS.index("0")

_TEMPLATES = {
    (0, 0): "What is the shape of the {x} object?",
    (0, 1): "Is the {x} object on the left?",
    (0, 2): "Is the {x} object on the top?",
    (1, 0): "What is the shape of the object closest to the {x} object?",
    (1, 1): "What is the shape of the object furthest from the {x} object?",
    (1, 2): "How many objects have the same shape as the {x} object?",
    (2, 0): "How many objects are between the {x} object and the {y} object?",
    (2, 1): "Is any object on the line through the {x} object and the {y} object?",
    (2, 2): "How many objects form an obtuse triangle with the {x} object and the {y} object?",
}


def vocabulary_arrays() -> dict[str, np.ndarray]:
    """The vocabularies stored with every split, as unicode string arrays."""
    return {
        "colors": np.array(COLORS),
        "shapes": np.array(SHAPES),
        "answers": np.array(ANSWERS),
        "kinds": np.array(KINDS),
        "subtypes": np.array([SUBTYPES[kind] for kind in KINDS]),
    }


def question_text(kind: int, subtype: int, colors: tuple[int, int]) -> str:
    """Readable English text of a question given its kind, subtype and color indices."""
    key = (int(kind), int(subtype))
    if key not in _TEMPLATES:
        raise ValueError(f"unknown question kind {kind} / subtype {subtype}; both must be in 0..2")
    used = 2 if key[0] == KINDS.index("ternary") else 1
    names = []
    for color in colors[:used]:
        if not 0 <= int(color) < NUM_OBJECTS:
            raise ValueError(f"color index {color} is not in 0..{NUM_OBJECTS - 1}")
        names.append(COLORS[int(color)])
    return _TEMPLATES[key].format(x=names[0], y=names[-1])


def generate(
    num_images: int, seed: int | np.random.SeedSequence, questions_per_kind: int = QUESTIONS_PER_KIND
) -> dict[str, np.ndarray]:
    """Generate `num_images` images with `questions_per_kind` questions of each kind per image.

    The same seed always gives identical arrays. Keys, dtypes and shapes are those of the
    on-disk format (see docs/sort-of-clevr.md).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be a positive integer, got {num_images}")
    if questions_per_kind < 1:
        raise ValueError(f"questions_per_kind must be a positive integer, got {questions_per_kind}")
    rng = np.random.default_rng(seed)
    shape = rng.integers(0, len(SHAPES), size=(num_images, NUM_OBJECTS))
    xy = _place_objects(rng, num_images)
    per_kind = [
        _non_relational_questions(rng, shape, xy, questions_per_kind),
        _binary_questions(rng, shape, xy, questions_per_kind),
        _ternary_questions(rng, xy, questions_per_kind),
    ]
    # (N, kind, question) flattened: per image, all questions of kind 0, then 1, then 2.
    subtype = np.stack([questions[0] for questions in per_kind], axis=1).reshape(-1)
    color = np.stack([questions[1] for questions in per_kind], axis=1).reshape(-1, 2)
    answer = np.stack([questions[2] for questions in per_kind], axis=1).reshape(-1)
    per_image = len(KINDS) * questions_per_kind
    return {
        "images": render(shape, xy),
        "object_color": np.tile(np.arange(NUM_OBJECTS, dtype=np.int8), (num_images, 1)),
        "object_shape": shape.astype(np.int8),
        "object_xy": xy.astype(np.int16),
        "q_image": np.repeat(np.arange(num_images, dtype=np.int32), per_image),
        "q_kind": np.tile(np.repeat(np.arange(len(KINDS), dtype=np.int8), questions_per_kind), num_images),
        "q_subtype": subtype.astype(np.int8),
        "q_color": color.astype(np.int8),
        "answer": answer.astype(np.int8),
        **vocabulary_arrays(),
        "format_version": np.array(FORMAT_VERSION, dtype=np.int32),
    }


def render(object_shape: np.ndarray, object_xy: np.ndarray) -> np.ndarray:
    """Draw (N, 6) shapes at (N, 6, 2) integer centers (x, y) into (N, 75, 75, 3) uint8 RGB images.

    Object k is drawn in color k on a white background; only each object's 11x11 window is
    touched, in chunks of images so that index arrays stay small.
    """
    object_shape = np.asarray(object_shape)
    object_xy = np.asarray(object_xy)
    num_images = object_shape.shape[0]
    if object_shape.shape != (num_images, NUM_OBJECTS) or object_xy.shape != (num_images, NUM_OBJECTS, 2):
        raise ValueError(
            f"expected object_shape (N, {NUM_OBJECTS}) and object_xy (N, {NUM_OBJECTS}, 2), "
            f"got {object_shape.shape} and {object_xy.shape}"
        )
    offsets = np.arange(-OBJECT_HALF_SIZE, OBJECT_HALF_SIZE + 1)
    square = np.ones((offsets.size, offsets.size), dtype=bool)
    circle = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= OBJECT_HALF_SIZE**2
    footprints = np.stack([square, circle])  # indexed by shape, rows are y offsets

    images = np.full((num_images, IMAGE_SIZE, IMAGE_SIZE, 3), 255, dtype=np.uint8)
    for start in range(0, num_images, RENDER_CHUNK):
        stop = min(start + RENDER_CHUNK, num_images)
        image = np.arange(start, stop)[:, None, None]
        for k, rgb in enumerate(COLOR_RGB):
            rows = object_xy[start:stop, k, 1].astype(np.int64)[:, None, None] + offsets[None, :, None]
            cols = object_xy[start:stop, k, 0].astype(np.int64)[:, None, None] + offsets[None, None, :]
            inside = footprints[object_shape[start:stop, k]]
            image_b, rows_b, cols_b = np.broadcast_arrays(image, rows, cols)
            images[image_b[inside], rows_b[inside], cols_b[inside]] = rgb
    return images


def answer(object_shape: np.ndarray, object_xy: np.ndarray, kind: int, subtype: int, colors: tuple[int, int]) -> int:
    """The answer (an index into ANSWERS) of one question, given as by ``question_text``, about one scene: its
    objects' (6,) shapes and (6, 2) centers, object k in color k. The generator's own definitions, ties included."""
    shape, xy = np.asarray(object_shape, np.int64)[None], np.asarray(object_xy, np.int64)[None]  # int16 overflows
    subtypes, x, y = (np.array([[value]]) for value in (subtype, *colors))
    if kind == KINDS.index("non_relational"):
        return int(_non_relational_answers(shape, xy, subtypes, x)[0, 0])
    if kind == KINDS.index("ternary"):
        return int(_ternary_answers(xy, subtypes, x, y)[0, 0])
    closest, furthest = (_extreme_objects(shape, xy, closest=side)[0] for side in (True, False))
    return int(_binary_answers(shape, subtypes, x, closest, furthest)[0, 0])


def _place_objects(rng: np.random.Generator, num_images: int) -> np.ndarray:
    """(N, 6, 2) int64 centers in [5, 69], pairwise at least MIN_CENTER_DISTANCE apart.

    Objects are placed one at a time for all images; only rejected images re-draw. This
    always terminates: five disks of radius 15 cannot cover the 64x64 square of centers.
    """
    low, high = OBJECT_HALF_SIZE, IMAGE_SIZE - 1 - OBJECT_HALF_SIZE
    xy = np.empty((num_images, NUM_OBJECTS, 2), dtype=np.int64)
    for k in range(NUM_OBJECTS):
        pending = np.arange(num_images)
        while pending.size:
            candidate = rng.integers(low, high + 1, size=(pending.size, 2))
            squared = ((xy[pending, :k] - candidate[:, None, :]) ** 2).sum(axis=-1)
            accepted = (squared >= MIN_CENTER_DISTANCE**2).all(axis=1)
            xy[pending[accepted], k] = candidate[accepted]
            pending = pending[~accepted]
    return xy


def _sample_among(rng: np.random.Generator, allowed: np.ndarray) -> np.ndarray:
    """Index along the last axis drawn uniformly among the True entries (among all if none)."""
    allowed = np.where(allowed.any(axis=-1, keepdims=True), allowed, True)
    counts = allowed.sum(axis=-1)
    rank = (rng.random(counts.shape) * counts).astype(np.int64)
    # The rank-th True entry is preceded by exactly `rank` entries whose running count <= rank.
    return (np.cumsum(allowed, axis=-1) <= rank[..., None]).sum(axis=-1)


def _gather(per_object: np.ndarray, index: np.ndarray) -> np.ndarray:
    """per_object (N, 6, ...) picked at index (N, Q) -> (N, Q, ...)."""
    return per_object[np.arange(per_object.shape[0])[:, None], index]


def _extreme_objects(shape: np.ndarray, xy: np.ndarray, closest: bool) -> tuple[np.ndarray, np.ndarray]:
    """For every image and object X: the closest (or furthest) other object, and whether asking is unambiguous.

    Exact ties resolve to the lowest object index; they only matter when no color is unambiguous.
    """
    squared = ((xy[:, :, None, :] - xy[:, None, :, :]) ** 2).sum(axis=-1)  # (N, X, Z)
    self_pair = np.eye(NUM_OBJECTS, dtype=bool)
    if closest:
        chosen = np.where(self_pair, np.iinfo(np.int64).max, squared).argmin(axis=-1)
    else:
        chosen = np.where(self_pair, -1, squared).argmax(axis=-1)
    distance = np.sqrt(squared)
    best = np.take_along_axis(distance, chosen[..., None], axis=-1)
    chosen_shape = np.take_along_axis(shape, chosen, axis=1)
    rival = (
        (np.abs(distance - best) < AMBIGUITY_MARGIN)
        & ~self_pair
        & (shape[:, None, :] != chosen_shape[:, :, None])
    )
    return chosen, ~rival.any(axis=-1)


def _non_relational_questions(
    rng: np.random.Generator, shape: np.ndarray, xy: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subtype, colors, answer) arrays of shapes (N, count), (N, count, 2), (N, count)."""
    num_images = shape.shape[0]
    subtype = rng.integers(0, 3, size=(num_images, count))
    x = rng.integers(0, NUM_OBJECTS, size=(num_images, count))
    return subtype, np.stack([x, np.full_like(x, -1)], axis=-1), _non_relational_answers(shape, xy, subtype, x)


def _non_relational_answers(shape: np.ndarray, xy: np.ndarray, subtype: np.ndarray, x: np.ndarray) -> np.ndarray:
    center = _gather(xy, x)
    # cx < 37.5 exactly, in integers.
    left = np.where(2 * center[..., 0] < IMAGE_SIZE, _YES, _NO)
    top = np.where(2 * center[..., 1] < IMAGE_SIZE, _YES, _NO)
    return np.choose(subtype, [_FIRST_SHAPE_ANSWER + _gather(shape, x), left, top])


def _binary_questions(
    rng: np.random.Generator, shape: np.ndarray, xy: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subtype, colors, answer); closest/furthest questions only ask about unambiguous colors."""
    num_images = shape.shape[0]
    subtype = rng.integers(0, 3, size=(num_images, count))
    closest, closest_ok = _extreme_objects(shape, xy, closest=True)
    furthest, furthest_ok = _extreme_objects(shape, xy, closest=False)
    allowed = np.choose(
        subtype[..., None],
        [closest_ok[:, None, :], furthest_ok[:, None, :], np.ones((1, 1, NUM_OBJECTS), dtype=bool)],
    )
    x = _sample_among(rng, allowed)
    answer = _binary_answers(shape, subtype, x, closest, furthest)
    return subtype, np.stack([x, np.full_like(x, -1)], axis=-1), answer


def _binary_answers(shape: np.ndarray, subtype: np.ndarray, x: np.ndarray, closest: np.ndarray,
                    furthest: np.ndarray) -> np.ndarray:
    x_shape = _gather(shape, x)
    same_shape = (shape[:, None, :] == x_shape[..., None]).sum(axis=-1)
    return np.choose(
        subtype,
        [
            _FIRST_SHAPE_ANSWER + _gather(shape, _gather(closest, x)),
            _FIRST_SHAPE_ANSWER + _gather(shape, _gather(furthest, x)),
            _FIRST_COUNT_ANSWER + same_shape,
        ],
    )


def _ternary_questions(
    rng: np.random.Generator, xy: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subtype, colors, answer) for questions about X, Y and every third object Z."""
    num_images = xy.shape[0]
    subtype = rng.integers(0, 3, size=(num_images, count))
    x = rng.integers(0, NUM_OBJECTS, size=(num_images, count))
    y = (x + rng.integers(1, NUM_OBJECTS, size=(num_images, count))) % NUM_OBJECTS
    return subtype, np.stack([x, y], axis=-1), _ternary_answers(xy, subtype, x, y)


def _ternary_answers(xy: np.ndarray, subtype: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = _gather(xy, x)[:, :, None, :]  # (N, Q, 1, 2)
    b = _gather(xy, y)[:, :, None, :]
    z = xy[:, None, :, :]  # (N, 1, 6, 2)
    objects = np.arange(NUM_OBJECTS)
    third = (objects != x[..., None]) & (objects != y[..., None])  # (N, Q, 6)

    between = ((z > np.minimum(a, b)) & (z < np.maximum(a, b))).all(axis=-1)

    # Exact integer test of |cross(b - a, z - a)| / |b - a| <= LINE_DISTANCE.
    direction = b - a
    offset = z - a
    cross = direction[..., 0] * offset[..., 1] - direction[..., 1] * offset[..., 0]
    on_line = cross**2 <= LINE_DISTANCE**2 * (direction**2).sum(axis=-1)

    def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (u * v).sum(axis=-1)

    obtuse = (dot(b - a, z - a) < 0) | (dot(a - b, z - b) < 0) | (dot(a - z, b - z) < 0)

    return np.choose(
        subtype,
        [
            _FIRST_COUNT_ANSWER + (between & third).sum(axis=-1),
            np.where((on_line & third).any(axis=-1), _YES, _NO),
            _FIRST_COUNT_ANSWER + (obtuse & third).sum(axis=-1),
        ],
    )
