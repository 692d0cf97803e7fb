"""CLEVR-style scenes: a jittered camera, objects placed on the ground plane, and the
directions and relationships CLEVR records for them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from relnet.tasks.clevr.schema import COLORS, MATERIALS, SHAPES, SIZES

WIDTH, HEIGHT = 480, 320
# Like CLEVR's Blender camera: above the front-right corner of the table, looking at its middle,
# a 35 mm lens on a 32 mm sensor (49.1 degrees horizontally).
CAMERA_POSITION = np.array([7.36, -6.93, 4.96])
HORIZONTAL_FOV = 2 * math.atan(16 / 35)


@dataclass(frozen=True)
class Camera:
    position: np.ndarray
    forward: np.ndarray
    right: np.ndarray
    up: np.ndarray
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def focal(self) -> float:
        """Focal length in pixels."""
        return self.width / 2 / math.tan(HORIZONTAL_FOV / 2)

    @classmethod
    def looking_at(cls, position, target=(0.0, 0.0, 0.0), width: int = WIDTH, height: int = HEIGHT) -> "Camera":
        position = np.asarray(position, dtype=np.float64)
        forward = np.asarray(target, dtype=np.float64) - position
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        return cls(position, forward, right, np.cross(right, forward), width, height)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] -> [..., 3] of (pixel x, pixel y, depth along the view axis)."""
        offset = np.asarray(points, dtype=np.float64) - self.position
        depth = offset @ self.forward
        x = self.width / 2 + self.focal * (offset @ self.right) / depth
        y = self.height / 2 - self.focal * (offset @ self.up) / depth
        return np.stack([x, y, depth], axis=-1)

    def ray_directions(self, window: tuple[slice, slice] | None = None) -> np.ndarray:
        """Unit ray directions through every pixel center, [height, width, 3] (or of the pixels
        of ``window``, a (rows, columns) pair of slices)."""
        rows, columns = window or (slice(0, self.height), slice(0, self.width))
        xs = (np.arange(columns.start, columns.stop) + 0.5 - self.width / 2) / self.focal
        ys = (np.arange(rows.start, rows.stop) + 0.5 - self.height / 2) / self.focal
        directions = (self.forward[None, None] + xs[None, :, None] * self.right[None, None]
                      - ys[:, None, None] * self.up[None, None])
        return directions / np.linalg.norm(directions, axis=-1, keepdims=True)

    def directions(self) -> dict[str, list[float]]:
        """CLEVR's ``directions``: the camera's axes projected onto the ground plane."""
        behind = self.forward * [1, 1, 0]
        behind /= np.linalg.norm(behind)
        right = self.right * [1, 1, 0]
        right /= np.linalg.norm(right)
        vectors = {"behind": behind, "front": -behind, "right": right, "left": -right,
                   "above": np.array([0.0, 0.0, 1.0]), "below": np.array([0.0, 0.0, -1.0])}
        return {name: [round(float(v), 6) for v in vector] for name, vector in vectors.items()}


@dataclass(frozen=True)
class SceneOptions:
    min_objects: int = 3
    max_objects: int = 10
    min_distance: float = 0.25  # between object surfaces
    margin: float = 0.4  # between centers along each cardinal direction
    min_pixels: int = 200  # every object must show at least this many pixels
    camera_jitter: float = 0.5
    light_jitter: float = 1.0
    placement_tries: int = 50


# Named sets of scene options for `relnet data clevr-gen --preset`: CLEVR's own, and scenes sized for
# a CPU (docs/clevr.md): at most six objects, so that an 80x80 image still shows each of them.
SCENE_PRESETS = {"clevr": SceneOptions(), "small": SceneOptions(min_objects=3, max_objects=6)}


def sample_camera(rng: np.random.Generator, options: SceneOptions) -> Camera:
    return Camera.looking_at(CAMERA_POSITION + rng.uniform(-options.camera_jitter, options.camera_jitter, 3))


def object_count(rng: np.random.Generator, options: SceneOptions) -> int:
    """How many objects a scene holds: drawn once, uniformly, and kept through failed placements
    (as CLEVR's generator does), so large scenes are as common as small ones."""
    return int(rng.integers(options.min_objects, options.max_objects + 1))


def place_objects(rng: np.random.Generator, camera: Camera, options: SceneOptions, count: int) -> list[dict] | None:
    """``count`` objects with attributes and positions, or None when a placement fails (try again)."""
    cardinal = [np.asarray(v[:2]) for name, v in camera.directions().items() if name in ("left", "right", "front", "behind")]
    objects: list[dict] = []
    for _ in range(count):
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size]
        for _ in range(options.placement_tries):
            x, y = rng.uniform(-3, 3, 2)
            fits = True
            for other in objects:
                dx, dy = x - other["3d_coords"][0], y - other["3d_coords"][1]
                if math.hypot(dx, dy) - radius - SIZES[other["size"]] < options.min_distance:
                    fits = False
                    break
                if any(abs(dx * d[0] + dy * d[1]) < options.margin for d in cardinal):
                    fits = False
                    break
            if fits:
                break
        else:
            return None
        shape = str(rng.choice(SHAPES))
        objects.append({
            "shape": shape, "size": size, "color": str(rng.choice(list(COLORS))),
            "material": str(rng.choice(MATERIALS)),
            # CLEVR v1.0 records every shape's center at its radius, cubes included (half-side = radius).
            "3d_coords": [round(float(x), 6), round(float(y), 6), round(radius, 6)],
            "rotation": round(float(rng.uniform(0, 360)), 6),
        })
    return objects


def relationships(objects: list[dict], directions: dict[str, list[float]], eps: float = 0.2) -> dict[str, list[list[int]]]:
    """CLEVR's ``relationships[name][i]``: the objects j that lie in direction ``name`` of object i
    (their offset from i, along the direction, exceeds ``eps``)."""
    coords = np.array([obj["3d_coords"] for obj in objects], dtype=np.float64).reshape(-1, 3)
    related = {}
    for name in ("left", "right", "behind", "front"):
        along = (coords[None, :, :] - coords[:, None, :]) @ np.asarray(directions[name])
        related[name] = [[j for j in range(len(objects)) if j != i and along[i, j] > eps] for i in range(len(objects))]
    return related
