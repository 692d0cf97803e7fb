import numpy as np

from relnet.tasks.clevr.generate import GeneratorOptions, make_scene
from relnet.tasks.clevr.render import cast, render, sample_lights, visible_pixels
from relnet.tasks.clevr.scene import CAMERA_POSITION, Camera, SceneOptions, place_objects, sample_camera

CAMERA = Camera.looking_at(CAMERA_POSITION)
LIGHTS = sample_lights(np.random.default_rng(0), 0.0)


def thing(shape, color, material="rubber", x=0.0, y=0.0, size="large"):
    radius = 0.7 if size == "large" else 0.35
    return {"shape": shape, "color": color, "size": size, "material": material,
            "3d_coords": [x, y, radius], "rotation": 30.0}


def saturation(pixels: np.ndarray) -> np.ndarray:
    pixels = pixels.astype(np.float64)
    high, low = pixels.max(-1), pixels.min(-1)
    return np.where(high > 0, (high - low) / np.maximum(high, 1), 0)


def test_render_is_deterministic_and_its_ids_are_casts():
    scene, _ = make_scene(0, GeneratorOptions(split="test", seed=3))
    objects = scene["objects"]
    image, ids = render(objects, CAMERA, LIGHTS)
    again, ids_again = render(objects, CAMERA, LIGHTS)
    assert np.array_equal(image, again) and np.array_equal(ids, ids_again)
    assert np.array_equal(ids, cast(objects, CAMERA)[2])


def test_visible_pixels_counts_what_the_render_shows():
    """`clevr-gen --no-images` decides visibility with ``visible_pixels``, a rendering run with the
    render's ids; the scenes agree only if the two counts agree, crowded scenes included."""
    rng, options, placed = np.random.default_rng(0), SceneOptions(), []
    for count in [10] * 40 + [6] * 10:  # many 10-object placements fail; a dozen get through
        camera = sample_camera(rng, options)
        objects = place_objects(rng, camera, options, count)
        if objects is None:
            continue
        placed.append(count)
        ids = cast(objects, camera)[2]
        assert np.array_equal(visible_pixels(objects, camera), np.bincount(ids[ids >= 0], minlength=count))
    assert placed.count(10) >= 8 and len(placed) >= 15, placed


def test_silhouettes_are_anti_aliased():
    image, ids = render([thing("sphere", "red")], CAMERA, LIGHTS)
    redness = image[..., 0].astype(int) - image[..., 1].astype(int)
    inside, outside = np.median(redness[ids == 0]), np.median(redness[ids == -1])
    # Pixels on the outline mix the sphere's red with the floor's gray.
    rim = (ids == 0) & ~(np.roll(ids, 1, 0) == 0) | (ids == -1) & (np.roll(ids, 1, 0) == 0)
    between = (redness > outside + 0.2 * (inside - outside)) & (redness < outside + 0.8 * (inside - outside))
    assert (rim & between).sum() >= 5


def test_metal_mirrors_a_neighbour():
    sphere = thing("sphere", "gray", "metal")
    alone, ids = render([sphere], CAMERA, LIGHTS)
    beside, _ = render([sphere, thing("cube", "red", x=1.0, y=1.6)], CAMERA, LIGHTS)
    on_sphere = ids == 0

    def reddish(image):
        rgb = image[on_sphere].astype(int)
        return int(((rgb[:, 0] - rgb[:, 1]) > 12).sum())

    assert reddish(alone) == 0 and reddish(beside) >= 20


def test_shadows_are_faint_and_soft():
    empty, _ = render([], CAMERA, LIGHTS)
    shadowed, ids = render([thing("sphere", "gray")], CAMERA, LIGHTS)
    ratio = shadowed[..., 0] / np.maximum(empty[..., 0], 1.0)
    # The floor, but for a few pixels around the sphere (edge pixels mix in the sphere's color).
    near = ids >= 0
    for axis in (0, 1):
        for shift in (-3, -2, -1, 1, 2, 3):
            near = near | np.roll(ids >= 0, shift, axis)
    floor = ~near
    darkest = ratio[floor].min()
    assert 0.45 < darkest < 0.9  # a shadow, but a faint one
    # A penumbra: many floor pixels part-way between shadow and light, and no sharp step.
    partial = floor & (ratio > darkest + 0.1 * (1 - darkest)) & (ratio < 1 - 0.1 * (1 - darkest))
    assert partial.sum() > 300
    steps = np.abs(np.diff(ratio, axis=1))[floor[:, 1:] & floor[:, :-1]]
    assert steps.max() < 0.06


def test_rubber_is_as_saturated_as_clevr():
    # Mean saturation of colored rubber objects in real CLEVR v1.0 images: about 0.49 to 0.58.
    for color in ("red", "blue", "yellow", "cyan"):
        image, ids = render([thing("cube", color)], CAMERA, LIGHTS)
        assert 0.4 < saturation(image[ids == 0]).mean() < 0.65, color
