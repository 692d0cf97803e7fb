"""Balls on a table joined by invisible springs, simulated with NumPy, vectorized over scenes.

The exact set-up is documented in docs/physics.md. In short: 10 balls of mass 1 in the box
[-1, 1]^2 with elastic walls; 1 to 4 systems, each a random tree of springs over 2 or more balls
(the other balls are free); every spring starts at its rest length; random initial velocities;
semi-implicit Euler at a 5 ms step, 16 frames recorded 50 ms apart.
"""

from __future__ import annotations

import numpy as np

NUM_BALLS = 10
NUM_FRAMES = 16
MAX_SYSTEMS = 4
BALL_RADIUS = 0.05
STIFFNESS = 20.0  # N/m for balls of mass 1: a lone pair oscillates with a period of about 1 s
REST_LENGTH_RANGE = (0.25, 0.45)
VELOCITY_SCALE = 0.4
TIME_STEP = 0.005
STEPS_PER_FRAME = 10
SIMULATE_CHUNK = 5000
FORMAT_VERSION = 1
_WALL = 1.0 - BALL_RADIUS


def random_systems(rng: np.random.Generator) -> list[list[int]]:
    """Ball groups of one scene: 1 to MAX_SYSTEMS disjoint groups of at least 2 balls each."""
    num_systems = int(rng.integers(1, MAX_SYSTEMS + 1))
    connected = int(rng.integers(2 * num_systems, NUM_BALLS + 1))
    sizes = np.full(num_systems, 2)
    for _ in range(connected - 2 * num_systems):  # share out the extra balls at random
        sizes[rng.integers(num_systems)] += 1
    balls = rng.permutation(NUM_BALLS)
    groups, start = [], 0
    for size in sizes:
        groups.append(balls[start:start + size].tolist())
        start += size
    return groups


def build_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene's springs and start: adjacency [10, 10], rest lengths [10, 10], positions [10, 2].

    Each group is a random tree: every ball after the first hangs from a random earlier ball of
    its group, placed at the spring's rest length in a random direction that stays in the box.
    """
    adjacency = np.zeros((NUM_BALLS, NUM_BALLS), dtype=np.uint8)
    rest = np.zeros((NUM_BALLS, NUM_BALLS))
    position = rng.uniform(-_WALL, _WALL, size=(NUM_BALLS, 2))
    for group in random_systems(rng):
        for k in range(1, len(group)):
            child, parent = group[k], group[int(rng.integers(k))]
            length = rng.uniform(*REST_LENGTH_RANGE)
            for _ in range(20):  # a direction that keeps the child inside the box (almost always the first)
                angle = rng.uniform(0, 2 * np.pi)
                candidate = position[parent] + length * np.array([np.cos(angle), np.sin(angle)])
                if np.all(np.abs(candidate) <= _WALL):
                    break
            else:
                candidate = np.clip(candidate, -_WALL, _WALL)
                length = float(np.linalg.norm(candidate - position[parent]))
            position[child] = candidate
            adjacency[child, parent] = adjacency[parent, child] = 1
            rest[child, parent] = rest[parent, child] = length
    return adjacency, rest, position


def simulate(adjacency: np.ndarray, rest: np.ndarray, position: np.ndarray, velocity: np.ndarray,
             return_velocity: bool = False):
    """Integrate a batch of scenes: returns positions [S, 16, 10, 2] (and velocities if asked).

    Forces: Hooke's law along every spring. Walls reflect a ball elastically. Balls do not collide
    with each other (they pass through), so motion comes from springs and walls alone.
    """
    num_scenes = len(position)
    # Springs as an incidence matrix [S, balls, springs]: +1 at one end, -1 at the other. The
    # springs' stretch and the forces on the balls are then two small batched matmuls per step.
    max_springs = max(int(np.triu(adjacency, 1).sum((1, 2)).max()), 1)
    incidence = np.zeros((num_scenes, NUM_BALLS, max_springs))
    spring_rest = np.zeros((num_scenes, max_springs))
    scene, a, b = np.triu(adjacency, 1).nonzero()
    slot = np.arange(len(scene)) - np.searchsorted(scene, scene)  # index of each spring within its scene
    incidence[scene, a, slot] = 1.0
    incidence[scene, b, slot] = -1.0
    spring_rest[scene, slot] = rest[scene, a, b]
    has_spring = np.zeros((num_scenes, max_springs), dtype=bool)
    has_spring[scene, slot] = True
    ends = np.swapaxes(incidence, 1, 2)  # [S, springs, balls]

    position, velocity = position.astype(np.float64).copy(), velocity.astype(np.float64).copy()
    frames = np.empty((num_scenes, NUM_FRAMES, NUM_BALLS, 2))
    frame_velocities = np.empty_like(frames)
    for frame in range(NUM_FRAMES):
        frames[:, frame], frame_velocities[:, frame] = position, velocity
        if frame == NUM_FRAMES - 1:
            break
        for _ in range(STEPS_PER_FRAME):
            span = ends @ position  # [S, springs, 2]: first end minus second end
            length = np.sqrt((span**2).sum(-1))
            tension = np.where(has_spring, STIFFNESS * (length - spring_rest) / np.maximum(length, 1e-12), 0.0)
            # A stretched spring pulls its first end toward the second (-span) and the second toward the first.
            velocity -= TIME_STEP * (incidence @ (tension[..., None] * span))
            position += TIME_STEP * velocity
            # Elastic walls: mirror the position back inside and reverse that velocity component.
            low, high = position < -_WALL, position > _WALL
            position = np.where(low, -2 * _WALL - position, np.where(high, 2 * _WALL - position, position))
            velocity = np.where(low | high, -velocity, velocity)
    return (frames, frame_velocities) if return_velocity else frames


def count_systems(adjacency: np.ndarray) -> np.ndarray:
    """Connected components of 2 or more balls, per scene (label propagation, vectorized)."""
    num_scenes = len(adjacency)
    labels = np.tile(np.arange(NUM_BALLS), (num_scenes, 1))
    linked = adjacency.astype(bool) | np.eye(NUM_BALLS, dtype=bool)
    for _ in range(NUM_BALLS):  # the smallest label spreads along edges; 10 rounds reach every ball
        labels = np.where(linked, labels[:, None, :], NUM_BALLS).min(-1)
    has_edge = adjacency.any(-1)
    roots = (labels == np.arange(NUM_BALLS)) & has_edge
    return roots.sum(-1)


def generate(num_scenes: int, seed: np.random.SeedSequence, progress=None) -> dict[str, np.ndarray]:
    """Scenes, trajectories and targets of one split, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    adjacency = np.empty((num_scenes, NUM_BALLS, NUM_BALLS), dtype=np.uint8)
    rest = np.empty((num_scenes, NUM_BALLS, NUM_BALLS))
    start = np.empty((num_scenes, NUM_BALLS, 2))
    for scene in range(num_scenes):
        adjacency[scene], rest[scene], start[scene] = build_scene(rng)
    velocity = rng.normal(0, VELOCITY_SCALE, size=(num_scenes, NUM_BALLS, 2))
    trajectories = np.empty((num_scenes, NUM_FRAMES, NUM_BALLS, 2), dtype=np.float32)
    for first in range(0, num_scenes, SIMULATE_CHUNK):
        chunk = slice(first, first + SIMULATE_CHUNK)
        trajectories[chunk] = simulate(adjacency[chunk], rest[chunk], start[chunk], velocity[chunk])
        if progress is not None:
            progress(min(first + SIMULATE_CHUNK, num_scenes))
    return {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "trajectories": trajectories,
        "connections": adjacency,
        "num_systems": count_systems(adjacency).astype(np.int8),
    }
