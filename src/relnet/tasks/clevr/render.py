"""A NumPy ray caster for CLEVR-style scenes: analytic spheres, cylinders and rotated cubes on
a gray ground plane, three lights, soft shadows, diffuse rubber and shiny metal.

Rays are cast only inside each object's screen window (its projected bounding sphere), so the
cost is one ground-plane pass plus work proportional to the pixels objects cover.
"""

from __future__ import annotations

import math

import numpy as np

from relnet.tasks.clevr.scene import Camera
from relnet.tasks.clevr.schema import COLORS, SIZES

GROUND_ALBEDO = 0.2
AMBIENT = 0.16
# Light directions (toward the light) before jitter, and their strengths: a key light in front
# and to the left of the camera casts the shadows; a fill from the right and a back light soften.
KEY_LIGHT = np.array([-0.25, -1.0, 1.35])
FILL_LIGHT = np.array([1.0, -0.25, 0.8])
BACK_LIGHT = np.array([-0.7, 0.9, 1.0])
STRENGTHS = (0.95, 0.3, 0.2)
# The sphere (in units of the object's radius) that stands in for a shape when casting shadows.
SHADOW_RADIUS = {"sphere": 1.0, "cube": 0.85, "cylinder": 1.1}


def _linear(rgb) -> np.ndarray:
    return (np.asarray(rgb, dtype=np.float64) / 255.0) ** 2.2


ALBEDO = {name: _linear(rgb) for name, rgb in COLORS.items()}


def sample_lights(rng: np.random.Generator, jitter: float) -> list[np.ndarray]:
    lights = []
    for base in (KEY_LIGHT, FILL_LIGHT, BACK_LIGHT):
        direction = base + rng.uniform(-jitter, jitter, 3) * 0.15
        lights.append(direction / np.linalg.norm(direction))
    return lights


def _bounding_radius(obj: dict) -> float:
    radius = SIZES[obj["size"]]
    return radius * (math.sqrt(3) if obj["shape"] == "cube" else math.sqrt(2) if obj["shape"] == "cylinder" else 1.0)


def _window(camera: Camera, corners: np.ndarray, pad: int = 2) -> tuple[slice, slice] | None:
    """The screen rectangle covering world points ``corners`` (all in front of the camera)."""
    projected = camera.project(corners)
    if np.any(projected[:, 2] <= 0.05):
        return slice(0, camera.height), slice(0, camera.width)
    x0 = max(int(math.floor(projected[:, 0].min())) - pad, 0)
    x1 = min(int(math.ceil(projected[:, 0].max())) + pad, camera.width)
    y0 = max(int(math.floor(projected[:, 1].min())) - pad, 0)
    y1 = min(int(math.ceil(projected[:, 1].max())) + pad, camera.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def _box_corners(low, high) -> np.ndarray:
    return np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])


def _intersect(obj: dict, origin: np.ndarray, directions: np.ndarray):
    """Ray distances (inf where missed) and unit normals of one object for rays [h, w, 3]."""
    radius = SIZES[obj["size"]]
    center = np.asarray(obj["3d_coords"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if obj["shape"] == "sphere":
            offset = origin - center
            b = directions @ offset
            disc = b * b - (offset @ offset - radius * radius)
            t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
            t = np.where(t > 0, t, np.inf)
            normals = (origin + t[..., None] * directions - center) / radius
        elif obj["shape"] == "cylinder":
            ox, oy = origin[0] - center[0], origin[1] - center[1]
            dx, dy, dz = directions[..., 0], directions[..., 1], directions[..., 2]
            a = dx * dx + dy * dy
            b = ox * dx + oy * dy
            disc = b * b - a * (ox * ox + oy * oy - radius * radius)
            t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
            z_side = origin[2] + t_side * dz
            t_side = np.where((disc > 0) & (t_side > 0) & (z_side >= 0) & (z_side <= 2 * radius), t_side, np.inf)
            t_top = (2 * radius - origin[2]) / dz
            top_x, top_y = ox + t_top * dx, oy + t_top * dy
            t_top = np.where((t_top > 0) & (top_x * top_x + top_y * top_y <= radius * radius), t_top, np.inf)
            on_top = t_top < t_side
            t = np.minimum(t_side, t_top)
            hit_x, hit_y = ox + t * dx, oy + t * dy
            normals = np.where(on_top[..., None], np.array([0.0, 0.0, 1.0]),
                               np.stack([hit_x / radius, hit_y / radius, np.zeros_like(t)], axis=-1))
        else:  # cube: slab test in the cube's own frame
            half = center[2]
            angle = math.radians(obj["rotation"])
            cos, sin = math.cos(angle), math.sin(angle)
            to_local = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
            local_origin = to_local @ (origin - center)
            local_dirs = directions @ to_local.T
            t_low = (-half - local_origin) / local_dirs
            t_high = (half - local_origin) / local_dirs
            t_near = np.minimum(t_low, t_high)
            t_far = np.maximum(t_low, t_high).min(axis=-1)
            face = t_near.argmax(axis=-1)
            t_enter = t_near.max(axis=-1)
            t = np.where((t_enter < t_far) & (t_enter > 0), t_enter, np.inf)
            local_normals = np.zeros(directions.shape)
            sign = -np.sign(np.take_along_axis(local_dirs, face[..., None], axis=-1))
            np.put_along_axis(local_normals, face[..., None], sign, axis=-1)
            normals = local_normals @ to_local
    return t, normals


def _occlusion(points: np.ndarray, obj: dict, light: np.ndarray) -> np.ndarray:
    """Soft shadow of one object (as a sphere) toward a directional light, 0 (lit) to 1 (dark)."""
    radius = SIZES[obj["size"]] * SHADOW_RADIUS[obj["shape"]]
    to_center = np.asarray(obj["3d_coords"]) - points
    along = to_center @ light
    perpendicular = np.sqrt(np.maximum((to_center * to_center).sum(-1) - along * along, 0))
    penumbra = 0.04 + 0.1 * np.maximum(along, 0)
    shade = np.clip((radius + penumbra - perpendicular) / (2 * penumbra), 0, 1)
    return np.where(along > 0, shade * shade * (3 - 2 * shade), 0.0)


def cast(objects: list[dict], camera: Camera, directions: np.ndarray | None = None):
    """Primary rays through every pixel: (depth, normals, ids), ids the object seen at each pixel
    (-1: ground). Enough to tell which objects show, without shading anything."""
    directions = camera.ray_directions() if directions is None else directions
    origin = camera.position
    height, width = directions.shape[:2]
    with np.errstate(divide="ignore"):
        depth = np.where(directions[..., 2] < 0, -origin[2] / directions[..., 2], np.inf)
    normals = np.zeros((height, width, 3))
    normals[..., 2] = 1.0
    ids = np.full((height, width), -1, dtype=np.int16)
    for index, obj in enumerate(objects):
        center = np.asarray(obj["3d_coords"])
        reach = _bounding_radius(obj)
        window = _window(camera, _box_corners(center - reach, center + reach))
        if window is None:
            continue
        t, n = _intersect(obj, origin, directions[window])
        closer = t < depth[window]
        depth[window] = np.where(closer, t, depth[window])
        normals[window] = np.where(closer[..., None], n, normals[window])
        ids[window] = np.where(closer, index, ids[window])
    return depth, normals, ids


def visible_pixels(objects: list[dict], camera: Camera) -> np.ndarray:
    """How many pixels of each object the camera sees: ``cast``'s ids, with rays cast only inside
    each object's window (objects stand on the floor, so the floor never hides them)."""
    depth = np.full((camera.height, camera.width), np.inf)
    ids = np.full((camera.height, camera.width), -1, dtype=np.int16)
    for index, obj in enumerate(objects):
        center = np.asarray(obj["3d_coords"])
        reach = _bounding_radius(obj)
        window = _window(camera, _box_corners(center - reach, center + reach))
        if window is None:
            continue
        t = _intersect(obj, camera.position, camera.ray_directions(window))[0]
        closer = t < depth[window]
        depth[window] = np.where(closer, t, depth[window])
        ids[window] = np.where(closer, index, ids[window])
    return np.bincount(ids[ids >= 0].ravel(), minlength=len(objects))


def render(objects: list[dict], camera: Camera, lights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The image (uint8 [H, W, 3], RGB) and the object index seen at each pixel (-1: ground)."""
    directions = camera.ray_directions()
    origin = camera.position
    height, width = directions.shape[:2]
    depth, normals, ids = cast(objects, camera, directions)

    points = origin + np.where(np.isfinite(depth), depth, 1e3)[..., None] * directions
    key = lights[0]
    lit = np.ones((height, width))
    for index, obj in enumerate(objects):
        # Shadows fall inside the box spanned by the object and its shadow on the ground.
        center = np.asarray(obj["3d_coords"])
        reach = _bounding_radius(obj)
        ground_shadow = center - key * (center[2] / key[2])
        spread = reach / key[2] + 0.6
        low = np.minimum(center - reach, ground_shadow - spread)
        high = np.maximum(center + reach, ground_shadow + spread)
        low[2], high[2] = 0.0, center[2] + reach
        window = _window(camera, _box_corners(low, high))
        if window is None:
            continue
        occlusion = _occlusion(points[window], obj, key)
        lit[window] *= 1 - np.where(ids[window] == index, 0.0, occlusion)

    # The floor faces straight up, so its light is a sum of constants and the key light's shadow;
    # it fades gently with distance from the middle of the table, as under CLEVR's lamps.
    floor_light = AMBIENT + sum(strength * light[2] for light, strength in zip(lights[1:], STRENGTHS[1:]))
    floor = (floor_light + STRENGTHS[0] * key[2] * lit) / (1 + 0.004 * (points[..., 0] ** 2 + points[..., 1] ** 2))
    color = np.repeat((GROUND_ALBEDO * floor)[..., None], 3, axis=-1)

    # Objects are shaded only where they are seen.
    seen = np.nonzero(ids >= 0)
    owner = ids[seen]
    albedo = np.array([ALBEDO[obj["color"]] for obj in objects])[owner]
    metal = np.array([obj["material"] == "metal" for obj in objects])[owner]
    n, d, shadow = normals[seen], directions[seen], lit[seen]
    diffuse = AMBIENT + sum(np.clip(n @ light, 0, None) * strength for light, strength in zip(lights, STRENGTHS))
    diffuse += np.clip(n @ key, 0, None) * STRENGTHS[0] * (shadow - 1)
    halfway = key - d
    halfway /= np.linalg.norm(halfway, axis=-1, keepdims=True)
    highlight = np.clip((n * halfway).sum(-1), 0, 1)
    # Metal reflects its surroundings: the floor below the horizon, the bright backdrop above.
    reflected_z = d[:, 2] - 2 * (d * n).sum(-1) * n[:, 2]
    surroundings = np.where(reflected_z < 0, GROUND_ALBEDO * 0.9, 0.35 + 0.4 * reflected_z)
    rubber = albedo * diffuse[:, None] + (0.04 * highlight**8 * shadow)[:, None]
    shiny = albedo * (0.35 * diffuse + 1.5 * surroundings)[:, None] + (1.6 * highlight**90 * shadow)[:, None]
    color[seen] = np.where(metal[:, None], shiny, rubber)
    image = np.clip(color, 0, 1) ** (1 / 2.2)
    return (image * 255 + 0.5).astype(np.uint8), ids
