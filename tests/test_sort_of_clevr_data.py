"""Sort-of-CLEVR generation and storage: answers re-derived independently, rendering, format, determinism."""

import math
from pathlib import Path

import numpy as np
import pytest

from relnet.errors import DataError
from relnet.tasks.sort_of_clevr.data import load_split, save_split, write_dataset
from relnet.tasks.sort_of_clevr.generate import (
    ANSWERS,
    COLOR_RGB,
    COLORS,
    KINDS,
    SHAPES,
    SUBTYPES,
    generate,
    question_text,
    render,
)

NUM_IMAGES = 300


@pytest.fixture(scope="module")
def split() -> dict[str, np.ndarray]:
    return generate(NUM_IMAGES, seed=7)


def closest_or_furthest(centers, x, closest):
    """Index of the object other than x with the smallest (largest) distance; ties to the lowest index."""
    best = None
    for j, center in enumerate(centers):
        if j == x:
            continue
        squared = (center[0] - centers[x][0]) ** 2 + (center[1] - centers[x][1]) ** 2
        key = (squared if closest else -squared, j)
        if best is None or key < best[0]:
            best = (key, j)
    return best[1]


def expected_answer(shapes, centers, kind, subtype, x, y):
    """Straightforward re-implementation of docs/sort-of-clevr.md, one question at a time."""
    name = (KINDS[kind], SUBTYPES[KINDS[kind]][subtype])
    cx, cy = centers[x]
    if name == ("non_relational", "shape"):
        return SHAPES[shapes[x]]
    if name == ("non_relational", "left"):
        return "yes" if cx < 37.5 else "no"
    if name == ("non_relational", "top"):
        return "yes" if cy < 37.5 else "no"
    if name[1] in ("closest_shape", "furthest_shape"):
        chosen = closest_or_furthest(centers, x, name[1] == "closest_shape")
        assert chosen != x
        return SHAPES[shapes[chosen]]
    if name == ("binary", "count_same_shape"):
        return str(sum(1 for s in shapes if s == shapes[x]))
    (ax, ay), (bx, by) = centers[x], centers[y]
    thirds = [centers[z] for z in range(6) if z not in (x, y)]
    if name == ("ternary", "count_between"):
        inside = [
            min(ax, bx) < zx < max(ax, bx) and min(ay, by) < zy < max(ay, by) for zx, zy in thirds
        ]
        return str(sum(inside))
    if name == ("ternary", "any_on_line"):
        # Distance to the line is |cross| / length; squaring keeps the 5 px boundary exact in integers.
        length_squared = (bx - ax) ** 2 + (by - ay) ** 2
        near = [((bx - ax) * (zy - ay) - (by - ay) * (zx - ax)) ** 2 <= 25 * length_squared for zx, zy in thirds]
        return "yes" if any(near) else "no"
    assert name == ("ternary", "count_obtuse")

    def obtuse_at(v, p, q):
        return (p[0] - v[0]) * (q[0] - v[0]) + (p[1] - v[1]) * (q[1] - v[1]) < 0

    a, b = centers[x], centers[y]
    return str(sum(1 for z in thirds if obtuse_at(a, b, z) or obtuse_at(b, a, z) or obtuse_at(z, a, b)))


def test_keys_dtypes_and_shapes(split):
    n, q = NUM_IMAGES, NUM_IMAGES * 30
    expected = {
        "images": (np.uint8, (n, 75, 75, 3)),
        "object_color": (np.int8, (n, 6)),
        "object_shape": (np.int8, (n, 6)),
        "object_xy": (np.int16, (n, 6, 2)),
        "q_image": (np.int32, (q,)),
        "q_kind": (np.int8, (q,)),
        "q_subtype": (np.int8, (q,)),
        "q_color": (np.int8, (q, 2)),
        "answer": (np.int8, (q,)),
        "format_version": (np.int32, ()),
    }
    for key, (dtype, shape) in expected.items():
        assert split[key].dtype == dtype, key
        assert split[key].shape == shape, key
    vocabularies = {"colors": (6,), "shapes": (2,), "answers": (11,), "kinds": (3,), "subtypes": (3, 3)}
    for key, shape in vocabularies.items():
        assert split[key].dtype.kind == "U" and split[key].shape == shape, key
    assert set(split) == set(expected) | set(vocabularies)
    assert split["answers"].tolist() == list(ANSWERS)
    assert split["subtypes"].tolist() == [list(SUBTYPES[kind]) for kind in KINDS]
    assert int(split["format_version"]) == 1
    assert (split["object_color"] == np.arange(6)).all()


def test_every_answer_matches_an_independent_recomputation(split):
    shapes = split["object_shape"].tolist()
    centers = [[tuple(c) for c in image] for image in split["object_xy"].tolist()]
    rows = zip(
        split["q_image"].tolist(), split["q_kind"].tolist(), split["q_subtype"].tolist(),
        split["q_color"].tolist(), split["answer"].tolist(),
    )
    for image, kind, subtype, (x, y), answer in rows:
        assert ANSWERS[answer] == expected_answer(shapes[image], centers[image], kind, subtype, x, y)


def test_closest_and_furthest_questions_are_unambiguous(split):
    for image, kind, subtype, (x, _) in zip(
        split["q_image"], split["q_kind"], split["q_subtype"], split["q_color"]
    ):
        if kind != 1 or subtype == 2:
            continue
        centers = split["object_xy"][image].astype(float)
        shapes = split["object_shape"][image]
        distances = np.hypot(*(centers - centers[x]).T)
        chosen = closest_or_furthest(centers.tolist(), x, subtype == 0)
        rivals = [
            j for j in range(6)
            if j not in (x, chosen) and abs(distances[j] - distances[chosen]) < 1 and shapes[j] != shapes[chosen]
        ]
        assert not rivals


def test_positions_in_range_and_far_apart(split):
    xy = split["object_xy"].astype(int)
    assert xy.min() >= 5 and xy.max() <= 69
    for image in xy:
        for i in range(6):
            for j in range(i + 1, 6):
                assert math.dist(image[i], image[j]) >= 15


def test_render(split):
    images, xy, shapes = split["images"], split["object_xy"], split["object_shape"]
    for n in range(50):
        near_any = np.zeros((75, 75), dtype=bool)
        for k in range(6):
            cx, cy = xy[n, k]
            assert tuple(images[n, cy, cx]) == COLOR_RGB[k]
            corner = tuple(images[n, cy + 5, cx + 5])
            assert corner == ((255, 255, 255) if SHAPES[shapes[n, k]] == "circle" else COLOR_RGB[k])
            near_any[max(cy - 5, 0) : cy + 6, max(cx - 5, 0) : cx + 6] = True
        assert (images[n][~near_any] == 255).all()


def test_render_matches_pixel_definition():
    xy = np.array([[[5, 5], [69, 69], [20, 40], [40, 20], [60, 30], [30, 60]]], dtype=np.int16)
    shapes = np.array([[0, 1, 1, 0, 1, 0]], dtype=np.int8)
    expected = np.full((75, 75, 3), 255, dtype=np.uint8)
    for k in range(6):
        cx, cy = xy[0, k]
        for py in range(75):
            for px in range(75):
                dx, dy = px - cx, py - cy
                inside = dx * dx + dy * dy <= 25 if shapes[0, k] == 1 else abs(dx) <= 5 and abs(dy) <= 5
                if inside:
                    expected[py, px] = COLOR_RGB[k]
    assert np.array_equal(render(shapes, xy)[0], expected)


def test_question_layout(split):
    kinds = split["q_kind"].reshape(NUM_IMAGES, 30)
    assert (kinds == np.repeat(np.arange(3), 10)).all()
    assert (split["q_image"] == np.repeat(np.arange(NUM_IMAGES), 30)).all()
    for kind in range(3):
        counts = np.bincount(split["q_image"][split["q_kind"] == kind], minlength=NUM_IMAGES)
        assert (counts == 10).all()
        assert set(split["q_subtype"][split["q_kind"] == kind].tolist()) == {0, 1, 2}
    ternary = split["q_color"][split["q_kind"] == 2]
    assert set(ternary[:, 0].tolist()) == set(range(6))
    assert set(ternary[:, 1].tolist()) == set(range(6))
    assert (ternary[:, 0] != ternary[:, 1]).all()
    assert (split["q_color"][split["q_kind"] != 2, 1] == -1).all()
    assert set(split["q_color"][:, 0].tolist()) == set(range(6))


def test_question_text():
    assert question_text(0, 0, (0, -1)) == "What is the shape of the red object?"
    assert question_text(0, 1, (3, -1)) == "Is the orange object on the left?"
    assert question_text(1, 1, (4, -1)) == "What is the shape of the object furthest from the gray object?"
    assert question_text(2, 1, (0, 2)) == "Is any object on the line through the red object and the blue object?"
    with pytest.raises(ValueError):
        question_text(2, 0, (0, -1))


def test_generate_is_deterministic():
    first, second, other = generate(40, seed=3), generate(40, seed=3), generate(40, seed=4)
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert not np.array_equal(first["images"], other["images"])


def test_two_thousand_images_generate():
    arrays = generate(2000, seed=1)
    assert arrays["images"].shape == (2000, 75, 75, 3)
    assert arrays["answer"].shape == (60000,)


def test_write_dataset_is_byte_deterministic(tmp_path):
    first = write_dataset(tmp_path / "a", train_images=30, test_images=20, seed=5, progress=False)
    second = write_dataset(tmp_path / "b", train_images=30, test_images=20, seed=5, progress=False)
    other = write_dataset(tmp_path / "c", train_images=30, test_images=20, seed=6, progress=True)
    assert [p.name for p in first] == ["train.npz", "test.npz"]
    for a, b, c in zip(first, second, other):
        assert a.read_bytes() == b.read_bytes()
        assert a.read_bytes() != c.read_bytes()
    train, test = load_split(first[0]), load_split(first[1])
    assert len(train["images"]) == 30 and len(test["images"]) == 20
    assert not any((image == train["images"]).all(axis=(1, 2, 3)).any() for image in test["images"])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["test.npz", "train.npz"]


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_write_dataset_rejects_bad_counts(tmp_path, bad):
    with pytest.raises(ValueError, match="train_images"):
        write_dataset(tmp_path, train_images=bad, progress=False)


def test_save_load_round_trip(tmp_path, split):
    path = tmp_path / "split.npz"
    save_split(path, split)
    loaded = load_split(path)
    assert loaded.keys() == split.keys()
    for key in split:
        assert loaded[key].dtype == split[key].dtype, key
        assert np.array_equal(loaded[key], split[key]), key


@pytest.fixture(scope="module")
def small_split() -> dict[str, np.ndarray]:
    return generate(5, seed=0)


def save_modified(tmp_path: Path, arrays: dict[str, np.ndarray], key: str, value) -> Path:
    arrays = dict(arrays)
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    path = tmp_path / "broken.npz"
    save_split(path, arrays)
    return path


def test_load_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing.npz: no such file.*relnet data sort-of-clevr"):
        load_split(tmp_path / "nothing.npz")


def test_load_garbage_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not an npz archive")
    with pytest.raises(DataError, match="garbage.npz"):
        load_split(path)


def test_load_missing_key(tmp_path, small_split):
    path = save_modified(tmp_path, small_split, "answer", None)
    with pytest.raises(DataError, match="broken.npz: missing key 'answer'"):
        load_split(path)


def test_load_wrong_dtype(tmp_path, small_split):
    path = save_modified(tmp_path, small_split, "answer", small_split["answer"].astype(np.int64))
    with pytest.raises(DataError, match="broken.npz: key 'answer' has dtype int64, expected int8"):
        load_split(path)


def test_load_wrong_shape(tmp_path, small_split):
    path = save_modified(tmp_path, small_split, "object_xy", small_split["object_xy"][:, :5])
    with pytest.raises(DataError, match="broken.npz: key 'object_xy' has shape"):
        load_split(path)


@pytest.mark.parametrize(
    "key, index, value",
    [("answer", 0, len(ANSWERS)), ("q_image", 3, 5), ("q_kind", 0, -1), ("q_subtype", 1, 3), ("object_shape", 0, 2)],
)
def test_load_out_of_range(tmp_path, small_split, key, index, value):
    broken = small_split[key].copy()
    broken.reshape(-1)[index] = value
    path = save_modified(tmp_path, small_split, key, broken)
    with pytest.raises(DataError, match=f"broken.npz: key '{key}' holds {value}"):
        load_split(path)


def test_load_out_of_range_color(tmp_path, small_split):
    colors = small_split["q_color"].copy()
    colors[0, 1] = 2  # the first question is non-relational: column 1 must be -1
    path = save_modified(tmp_path, small_split, "q_color", colors)
    with pytest.raises(DataError, match="broken.npz: key 'q_color' holds 2 in column 1"):
        load_split(path)


def test_failed_save_leaves_no_file(tmp_path, small_split, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_split(tmp_path / "split.npz", small_split)
    assert list(tmp_path.iterdir()) == []


def test_vocabularies_match_constants(split):
    assert split["colors"].tolist() == list(COLORS)
    assert split["shapes"].tolist() == list(SHAPES)
    assert split["kinds"].tolist() == list(KINDS)
