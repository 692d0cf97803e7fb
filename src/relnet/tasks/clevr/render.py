"""A NumPy ray caster for CLEVR-style scenes: analytic spheres, cylinders and bevelled-looking
cubes on a gray ground plane under three lights, with faint soft shadows, matte rubber and
mirror-like metal that reflects the floor, the backdrop and the other objects (one bounce).
Object silhouettes and cube edges are supersampled 2x2, so edges are anti-aliased like CLEVR's.

Rays are cast only inside each object's screen window (its projected bounding sphere), so the
cost is one ground-plane pass plus work proportional to the pixels objects cover.
"""

from __future__ import annotations

import math

import numpy as np

from relnet.tasks.clevr.scene import Camera
from relnet.tasks.clevr.schema import COLORS, SIZES

# Light directions (toward the light) before jitter, and their strengths: a key light in front
# and to the left of the camera casts the shadows; a fill from the right and a back light soften.
KEY_LIGHT = np.array([-0.25, -1.0, 1.35])
FILL_LIGHT = np.array([1.0, -0.25, 0.8])
BACK_LIGHT = np.array([-0.7, 0.9, 1.0])
STRENGTHS = (0.95, 0.3, 0.2)
AMBIENT = 0.16
# Blender reads the colors of CLEVR's properties.json as linear RGB, so CLEVR's objects are paler
# and darker than those numbers shown as sRGB; EXPOSURE scales the lights to CLEVR's brightness.
ALBEDO = {name: np.asarray(rgb, dtype=np.float64) / 255.0 for name, rgb in COLORS.items()}
EXPOSURE = 0.38
# The floor's linear radiance: a constant plus a pool of lamp light on the front right of the
# table, fitted to the median of real CLEVR images.
FLOOR_BASE, FLOOR_POOL = 0.14, 0.144
POOL_CENTER, POOL_RADIUS = np.array([4.8, -2.05]), 4.9
# What metal mirrors above the horizon: dark near the horizon, bright higher up, toward the lamps.
BACKDROP, BACKDROP_RISE = 0.03, 0.6
METAL_REFLECTANCE = 0.8
GLINT = 1.2  # brightness of the lights' reflections on metal
# CLEVR's lamps are large area lights: shadows take only part of the key light, with wide penumbrae.
SHADOW_DEPTH = 0.5
# The sphere (in units of the object's radius) that stands in for a shape when casting shadows.
SHADOW_RADIUS = {"sphere": 1.0, "cube": 0.85, "cylinder": 1.1}
BEVEL = 0.08  # rounding of cube edges, as a fraction of the half-side
# Where the 2x2 supersamples of an edge pixel fall, in pixels from its center.
SUBPIXELS = np.array([[-0.25, -0.25], [-0.25, 0.25], [0.25, -0.25], [0.25, 0.25]])


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


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for one vector b (the arithmetic ``cast`` has always used), row-wise for many."""
    return a @ b if b.ndim == 1 else np.einsum("...i,...i->...", a, b)


def _intersect(obj: dict, origin: np.ndarray, directions: np.ndarray):
    """Ray distances (inf where missed) and unit normals of one object for rays [..., 3] from one
    origin [3] or from one origin per ray [..., 3] (reflected rays)."""
    radius = SIZES[obj["size"]]
    center = np.asarray(obj["3d_coords"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if obj["shape"] == "sphere":
            offset = origin - center
            b = _dot(directions, offset)
            disc = b * b - (_dot(offset, offset) - radius * radius)
            t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
            t = np.where(t > 0, t, np.inf)
            normals = (origin + t[..., None] * directions - center) / radius
        elif obj["shape"] == "cylinder":
            ox, oy = origin[..., 0] - center[0], origin[..., 1] - center[1]
            dx, dy, dz = directions[..., 0], directions[..., 1], directions[..., 2]
            a = dx * dx + dy * dy
            b = ox * dx + oy * dy
            disc = b * b - a * (ox * ox + oy * oy - radius * radius)
            t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
            z_side = origin[..., 2] + t_side * dz
            t_side = np.where((disc > 0) & (t_side > 0) & (z_side >= 0) & (z_side <= 2 * radius), t_side, np.inf)
            t_top = (2 * radius - origin[..., 2]) / dz
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
            local_origin = to_local @ (origin - center) if origin.ndim == 1 else (origin - center) @ to_local.T
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
    perpendicular = np.sqrt(np.maximum(np.einsum("...i,...i->...", to_center, to_center) - along * along, 0))
    penumbra = 0.1 + 0.3 * np.maximum(along, 0)
    shade = np.clip((radius + penumbra - perpendicular) / (2 * penumbra), 0, 1)
    return np.where(along > 0, shade * shade * (3 - 2 * shade), 0.0)


def _object_windows(objects: list[dict], camera: Camera):
    """(index, object, screen window) of each object that falls inside the image."""
    for index, obj in enumerate(objects):
        center = np.asarray(obj["3d_coords"])
        reach = _bounding_radius(obj)
        window = _window(camera, _box_corners(center - reach, center + reach))
        if window is not None:
            yield index, obj, window


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
    for index, obj, window in _object_windows(objects, camera):
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
    for index, obj, window in _object_windows(objects, camera):
        t = _intersect(obj, camera.position, camera.ray_directions(window))[0]
        closer = t < depth[window]
        depth[window] = np.where(closer, t, depth[window])
        ids[window] = np.where(closer, index, ids[window])
    return np.bincount(ids[ids >= 0].ravel(), minlength=len(objects))


def _image_shadows(objects: list[dict], camera: Camera, points: np.ndarray, ids: np.ndarray, key: np.ndarray) -> np.ndarray:
    """The share of the key light reaching each pixel's point [H, W] (objects do not shadow themselves:
    their own shading does that). Each shadow is computed only inside the screen box spanned by
    the object and its shadow on the ground."""
    lit = np.ones(ids.shape)
    for index, obj in enumerate(objects):
        center = np.asarray(obj["3d_coords"])
        reach = _bounding_radius(obj)
        ground_shadow = center - key * (center[2] / key[2])
        spread = reach / key[2] + 0.9
        low = np.minimum(center - reach, ground_shadow - spread)
        high = np.maximum(center + reach, ground_shadow + spread)
        low[2], high[2] = 0.0, center[2] + reach
        window = _window(camera, _box_corners(low, high))
        if window is None:
            continue
        occlusion = np.where(ids[window] == index, 0.0, _occlusion(points[window], obj, key))
        lit[window] *= 1 - SHADOW_DEPTH * occlusion
    return lit


def _ray_shadows(objects: list[dict], points: np.ndarray, ids: np.ndarray, key: np.ndarray) -> np.ndarray:
    """``_image_shadows`` for a few scattered points [N, 3]: every object tested against every point."""
    lit = np.ones(len(points))
    for index, obj in enumerate(objects):
        lit *= 1 - SHADOW_DEPTH * np.where(ids == index, 0.0, _occlusion(points, obj, key))
    return lit


def _trace(objects: list[dict], origins: np.ndarray, directions: np.ndarray, leaving: np.ndarray | None = None):
    """``cast`` for any rays [N, 3] from ``origins`` ([3] or [N, 3]): (depth, normals, ids), depth inf
    where a ray rises into the backdrop. ``leaving``: the object each ray starts on, which it
    cannot hit again (every shape is convex)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.where(directions[:, 2] < 0, -origins[..., 2] / directions[:, 2], np.inf)
    normals = np.zeros(directions.shape)
    normals[:, 2] = 1.0
    ids = np.full(len(directions), -1, dtype=np.int16)
    for index, obj in enumerate(objects):
        t, n = _intersect(obj, origins, directions)
        closer = t < depth if leaving is None else (t < depth) & (leaving != index)
        depth = np.where(closer, t, depth)
        normals = np.where(closer[:, None], n, normals)
        ids = np.where(closer, index, ids).astype(np.int16)
    return depth, normals, ids


def _bevelled(objects: list[dict], points: np.ndarray, normals: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Normals with cube edges rounded: the normal of a box with rounded edges, which equals the
    face normal except within ``BEVEL`` of an edge, where it turns smoothly to the next face."""
    normals = normals.copy()
    for index, obj in enumerate(objects):
        on_cube = ids == index
        if obj["shape"] != "cube" or not on_cube.any():
            continue
        center = np.asarray(obj["3d_coords"], dtype=np.float64)
        inner = center[2] * (1 - BEVEL)
        angle = math.radians(obj["rotation"])
        cos, sin = math.cos(angle), math.sin(angle)
        to_local = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
        local = (points[on_cube] - center) @ to_local.T
        outward = local - np.clip(local, -inner, inner)
        normals[on_cube] = (outward / np.linalg.norm(outward, axis=-1, keepdims=True)) @ to_local
    return normals


def _irradiance(normals: np.ndarray, lights: list[np.ndarray], lit: np.ndarray) -> np.ndarray:
    light = AMBIENT + sum(np.clip(normals @ light, 0, None) * strength for light, strength in zip(lights, STRENGTHS))
    return light + np.clip(normals @ lights[0], 0, None) * STRENGTHS[0] * (lit - 1)


def _floor(points: np.ndarray, lit: np.ndarray) -> np.ndarray:
    """Linear radiance of the floor at ``points``, brighter in the lamps' pool of light."""
    off_center = ((points[:, 0] - POOL_CENTER[0]) ** 2 + (points[:, 1] - POOL_CENTER[1]) ** 2) / POOL_RADIUS**2
    return (FLOOR_BASE + FLOOR_POOL / (1 + off_center)) * lit


def _shade(objects: list[dict], lights: list[np.ndarray], origins: np.ndarray, directions: np.ndarray,
           depth: np.ndarray, normals: np.ndarray, ids: np.ndarray, lit: np.ndarray, bounce: bool = True) -> np.ndarray:
    """Linear RGB [N, 3] of what rays [N, 3] hit (``_trace``'s depth, normals, ids; ``lit``: share of
    the key light). With ``bounce``, metal mirrors what its reflected rays hit; without (inside a
    reflection), metal is shaded like rubber: about as bright as a mirror of the room."""
    points = origins + np.where(np.isfinite(depth), depth, 0.0)[:, None] * directions
    ground = np.where(np.isfinite(depth), _floor(points, lit), BACKDROP + BACKDROP_RISE * np.clip(directions[:, 2], 0, 1))
    color = np.repeat(ground[:, None], 3, axis=-1)
    seen = np.nonzero(ids >= 0)[0]
    if len(seen) == 0:
        return color
    owner = ids[seen]
    albedo = np.array([ALBEDO[obj["color"]] for obj in objects])[owner]
    metal = np.array([obj["material"] == "metal" for obj in objects])[owner]
    n = _bevelled(objects, points[seen], normals[seen], owner)
    d = directions[seen]
    matte = albedo * (EXPOSURE * _irradiance(n, lights, lit[seen]))[:, None]
    color[seen] = matte
    if bounce and metal.any():
        shiny = seen[metal]
        color[shiny] = _mirror(objects, lights, points[shiny], d[metal], n[metal], owner[metal], albedo[metal], lit[shiny])
    return color


def _mirror(objects, lights, points, directions, normals, owner, albedo, lit) -> np.ndarray:
    """Metal: its color times what the reflected rays see (other objects, floor, backdrop, shaded
    without shadows), plus glints of the lights, dimmed where the metal is in shadow."""
    reflected = directions - 2 * np.einsum("ij,ij->i", directions, normals)[:, None] * normals
    depth, hit_normals, hit_ids = _trace(objects, points, reflected, leaving=owner)
    seen = _shade(objects, lights, points, reflected, depth, hit_normals, hit_ids, np.ones(len(points)), bounce=False)
    glint = sum(strength * np.clip(reflected @ light, 0, 1) ** 40 for light, strength in zip(lights, STRENGTHS))
    return albedo * METAL_REFLECTANCE * seen + (GLINT * glint * lit)[:, None] * (0.3 + 0.7 * albedo)


def _edges(ids: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Pixels beside a neighbour that shows another object or a surface turned by more than ~25
    degrees (silhouettes, cube edges, cylinder rims): those that need more than one sample."""
    edges = np.zeros(ids.shape, dtype=bool)
    across = (ids[:, 1:] != ids[:, :-1]) | (np.einsum("ijk,ijk->ij", normals[:, 1:], normals[:, :-1]) < 0.9)
    down = (ids[1:] != ids[:-1]) | (np.einsum("ijk,ijk->ij", normals[1:], normals[:-1]) < 0.9)
    edges[:, 1:] |= across
    edges[:, :-1] |= across
    edges[1:] |= down
    edges[:-1] |= down
    return edges


def _subpixel_directions(camera: Camera, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Unit rays [N * 4, 3] through the 2x2 ``SUBPIXELS`` of each pixel (rows[i], columns[i])."""
    xs = (columns[:, None] + 0.5 + SUBPIXELS[:, 1] - camera.width / 2) / camera.focal
    ys = (rows[:, None] + 0.5 + SUBPIXELS[:, 0] - camera.height / 2) / camera.focal
    directions = camera.forward + xs[..., None] * camera.right - ys[..., None] * camera.up
    directions = directions.reshape(-1, 3)
    return directions / np.linalg.norm(directions, axis=-1, keepdims=True)


def _supersampled(objects: list[dict], camera: Camera, lights: list[np.ndarray], rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Linear RGB [N, 3] of pixels (rows, columns), the mean of 2x2 samples each."""
    directions = _subpixel_directions(camera, rows, columns)
    depth, normals, ids = _trace(objects, camera.position, directions)
    points = camera.position + np.where(np.isfinite(depth), depth, 0.0)[:, None] * directions
    lit = _ray_shadows(objects, points, ids, lights[0])
    color = _shade(objects, lights, camera.position, directions, depth, normals, ids, lit)
    return color.reshape(len(rows), len(SUBPIXELS), 3).mean(axis=1)


def render(objects: list[dict], camera: Camera, lights: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The image (uint8 [H, W, 3], RGB) and the object index seen at each pixel center (-1: ground),
    which is ``cast``'s."""
    directions = camera.ray_directions()
    origin = camera.position
    height, width = directions.shape[:2]
    depth, normals, ids = cast(objects, camera, directions)
    points = origin + np.where(np.isfinite(depth), depth, 1e3)[..., None] * directions
    lit = _image_shadows(objects, camera, points, ids, lights[0])
    color = _shade(objects, lights, origin, directions.reshape(-1, 3), depth.ravel(), normals.reshape(-1, 3),
                   ids.ravel(), lit.ravel()).reshape(height, width, 3)
    rows, columns = np.nonzero(_edges(ids, normals))
    color[rows, columns] = _supersampled(objects, camera, lights, rows, columns)
    image = np.clip(color, 0, 1) ** (1 / 2.2)
    return (image * 255 + 0.5).astype(np.uint8), ids
