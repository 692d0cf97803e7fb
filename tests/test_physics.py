import json

import numpy as np
import pytest
import torch

from relnet.cli import main
from relnet.errors import ConfigError, DataError
from relnet.io import save_npz
from relnet.tasks import get_preset, get_task
from relnet.tasks.physics.data import load_split, write_dataset
from relnet.tasks.physics.models import ConnectionRN
from relnet.tasks.physics.simulate import (NUM_BALLS, NUM_FRAMES, STIFFNESS, build_scene, count_systems, generate,
                                           simulate)


def union_find_systems(adjacency: np.ndarray) -> int:
    """Independent check: groups of 2+ balls joined by springs, by union-find."""
    parent = list(range(NUM_BALLS))

    def root(ball):
        while parent[ball] != ball:
            ball = parent[ball]
        return ball

    for a, b in zip(*np.nonzero(adjacency)):
        parent[root(a)] = root(b)
    return len({root(ball) for ball in range(NUM_BALLS) if adjacency[ball].any()})


@pytest.fixture(scope="module")
def tiny_physics(tmp_path_factory):
    out = tmp_path_factory.mktemp("physics")
    write_dataset(out, train_scenes=96, test_scenes=40, seed=5, progress=False)
    return out


def test_same_seed_same_bytes(tmp_path):
    write_dataset(tmp_path / "a", train_scenes=30, test_scenes=10, seed=1, progress=False)
    write_dataset(tmp_path / "b", train_scenes=30, test_scenes=10, seed=1, progress=False)
    write_dataset(tmp_path / "c", train_scenes=30, test_scenes=10, seed=2, progress=False)
    read = lambda d: (d / "train.npz").read_bytes()
    assert read(tmp_path / "a") == read(tmp_path / "b") != read(tmp_path / "c")


def test_scenes_are_trees_of_springs_with_counted_systems():
    arrays = generate(300, np.random.SeedSequence(0))
    connections = arrays["connections"]
    assert (connections == connections.transpose(0, 2, 1)).all()
    assert not connections[:, np.arange(NUM_BALLS), np.arange(NUM_BALLS)].any()
    expected = [union_find_systems(scene) for scene in connections]
    assert arrays["num_systems"].tolist() == expected
    assert set(expected) == {1, 2, 3, 4}
    # Trees: springs = connected balls - systems.
    springs = connections.sum((1, 2)) // 2
    assert (springs == connections.any(-1).sum(-1) - arrays["num_systems"]).all()
    assert np.abs(arrays["trajectories"]).max() <= 1


def test_energy_is_conserved_and_springs_hold_balls_together():
    rng = np.random.default_rng(3)
    adjacency, rest, start = map(np.array, zip(*(build_scene(rng) for _ in range(64))))
    velocity = rng.normal(0, 0.4, start.shape)
    positions, velocities = simulate(adjacency, rest, start, velocity, return_velocity=True)
    assert positions.shape == (64, NUM_FRAMES, NUM_BALLS, 2)

    def energy(frame):
        offset = positions[:, frame, None] - positions[:, frame, :, None]
        stretch = np.sqrt((offset**2).sum(-1)) - rest
        return 0.5 * (velocities[:, frame] ** 2).sum((-1, -2)) + 0.25 * (STIFFNESS * adjacency * stretch**2).sum((-1, -2))

    assert np.abs(energy(-1) / energy(0) - 1).max() < 0.05
    distances = np.sqrt(((positions[:, :, None] - positions[:, :, :, None]) ** 2).sum(-1))  # [S, frame, i, j]
    joined = adjacency.astype(bool)
    assert (np.abs(distances[:, -1] - rest)[joined] < 0.5).all()  # a spring never stretches far
    free = ~joined & ~np.eye(NUM_BALLS, dtype=bool)
    assert distances.std(1)[joined].mean() < distances.std(1)[free].mean()


def test_count_systems_on_known_graphs():
    adjacency = np.zeros((2, NUM_BALLS, NUM_BALLS), dtype=np.uint8)
    for a, b in [(0, 1), (1, 2), (5, 6)]:
        adjacency[0, a, b] = adjacency[0, b, a] = 1
    assert count_systems(adjacency).tolist() == [2, 0]


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(connections=a["connections"].transpose(0, 2, 1).copy() * 0 + np.triu(a["connections"])),
     "symmetric"),
    (lambda a: a.update(num_systems=(a["num_systems"] + 1).astype(np.int8)), "disagrees"),
    (lambda a: a.update(trajectories=a["trajectories"] * 3), "outside the box"),
    (lambda a: a.update(trajectories=a["trajectories"][:, :8]), "expected float32"),
    (lambda a: a.pop("connections"), "missing key 'connections'"),
])
def test_bad_files_are_refused_with_the_reason(tiny_physics, tmp_path, change, message):
    arrays = dict(np.load(tiny_physics / "test.npz"))
    change(arrays)
    save_npz(tmp_path / "test.npz", arrays)
    with pytest.raises(DataError, match=message):
        load_split(tmp_path / "test.npz")


def test_connection_logits_are_symmetric_and_follow_the_balls():
    torch.manual_seed(0)
    model = ConnectionRN(g_widths=[16, 16])
    balls = torch.randn(3, NUM_BALLS, 2 * NUM_FRAMES)
    logits = model(balls)
    assert logits.shape == (3, 45)
    swapped = balls[:, [1, 0, *range(2, NUM_BALLS)]]  # exchange balls 0 and 1: pair (0,1) keeps its logit
    torch.testing.assert_close(model(swapped)[:, 0], logits[:, 0])
    torch.testing.assert_close(model(swapped)[:, 1:9], logits[:, 9:17])  # (0, j) became (1, j)


def test_the_box_symmetries_are_the_eight_mirrors_and_turns_of_the_square():
    from relnet.nn.symmetry import box_symmetries, random_box_symmetry

    path = torch.randn(1, 2 * NUM_FRAMES)
    x, y = path[:, :NUM_FRAMES], path[:, NUM_FRAMES:]
    images = box_symmetries(path)
    assert torch.equal(images[0], path) and torch.equal(images[4], torch.cat([y, x], -1))  # identity, the swap
    assert torch.equal(images[3], -path)  # the half turn
    as_set = lambda tensors: {tuple(t.flatten().tolist()) for t in tensors}
    assert len(as_set(images)) == 8
    assert all(as_set(box_symmetries(image)) == as_set(images) for image in images)  # a group: closed
    torch.manual_seed(0)
    drawn = random_box_symmetry(path.expand(400, 3, -1))  # each example one map, all its balls alike
    assert all(tuple(example[0].tolist()) in as_set(images) and torch.equal(example[0], example[2])
               for example in drawn)
    assert len(as_set(drawn[:, 0])) == 8


@pytest.mark.parametrize("kind", ["connections", "count"])
def test_a_model_made_to_respect_the_box_symmetries_answers_alike_for_every_mirror_and_turn(kind):
    from relnet.nn.symmetry import box_symmetries
    from relnet.tasks.physics.models import CountRN

    def build(symmetries):
        torch.manual_seed(0)
        return (ConnectionRN(g_widths=[16, 16], symmetries=symmetries) if kind == "connections" else
                CountRN(5, g_widths=[16, 16], f_widths=[16], symmetries=symmetries)).eval()

    balls = torch.randn(3, NUM_BALLS, 2 * NUM_FRAMES)
    plain, symmetric = build("none"), build("d4")
    assert plain.state_dict().keys() == symmetric.state_dict().keys()  # no weights of its own: a trained model takes it
    with torch.no_grad():
        answers = [symmetric(image) for image in box_symmetries(balls)]
        assert all(torch.allclose(answer, answers[0], atol=1e-5) for answer in answers)
        assert not all(torch.allclose(plain(image), plain(balls), atol=1e-3) for image in box_symmetries(balls))
        torch.testing.assert_close(answers[0], torch.stack([plain(image) for image in box_symmetries(balls)]).mean(0))
    with pytest.raises(ValueError, match="one of"):
        ConnectionRN(symmetries="c4")
    with pytest.raises(ConfigError, match="model.symmetries='c4': expected one of none, d4"):
        get_task(f"physics-{kind}").build_model(get_preset(f"physics-{kind}").with_overrides(["model.symmetries=c4"]),
                                                {"num_classes": 5})


def test_motion_features_are_positions_and_scaled_differences():
    from relnet.tasks.physics.models import ACCELERATION_GAIN, VELOCITY_GAIN, motion_features

    t = torch.arange(NUM_FRAMES, dtype=torch.float32)
    ball = torch.cat([0.5 * t, 0.25 * t**2])  # x moves at constant speed, y accelerates
    features = motion_features(ball.view(1, 1, -1))[0, 0]
    assert features.shape == (2 * (16 + 15 + 14),)
    torch.testing.assert_close(features[:32], ball)
    torch.testing.assert_close(features[32:47], torch.full((15,), 0.5 * VELOCITY_GAIN))
    torch.testing.assert_close(features[76:90], torch.full((14,), 0.5 * ACCELERATION_GAIN))


def test_metrics(tiny_physics):
    connections = get_task("physics-connections")
    split = connections.load(tiny_physics, "test", get_preset("physics-connections"))
    truth = split.tensors["connections"]
    predictions = truth.clone()
    predictions[0, 0] = 1 - predictions[0, 0]
    metrics = connections.metrics(split, predictions)
    assert metrics["scores"]["exact_match"] == pytest.approx(39 / 40)
    assert metrics["scores"]["pair_accuracy"] == pytest.approx(1 - 1 / (40 * 45))
    # systems counted from the predicted springs: only scene 0 changed; recount it independently
    changed = np.zeros((NUM_BALLS, NUM_BALLS), dtype=np.uint8)
    changed[np.triu_indices(NUM_BALLS, 1)] = predictions[0].numpy()
    wrong_count = union_find_systems(changed | changed.T) != split.tensors["num_systems"][0].item()
    assert metrics["count_from_springs"] == pytest.approx(1 - wrong_count / 40)
    assert "counted from the springs" in connections.format_metrics(metrics)
    assert connections.metrics(split, truth)["count_from_springs"] == 1.0
    assert connections.metrics(split, torch.zeros_like(truth))["count_from_springs"] == 0.0  # no springs, no systems
    assert connections.count_correct(torch.where(truth.bool(), 5.0, -5.0), truth) == 40
    count = get_task("physics-count")
    count_split = count.load(tiny_physics, "test", get_preset("physics-count"))
    answer = count_split.tensors["num_systems"]
    metrics = count.metrics(count_split, torch.where(answer == 1, 2, answer))
    assert metrics["by_count"]["1"] == 0.0 and metrics["by_count"]["2"] == 1.0
    assert "paper: 95%" in count.format_metrics(metrics)


@pytest.mark.parametrize("preset", ["physics-connections", "physics-mlp-connections", "physics-count",
                                    "physics-mlp-count"])
def test_cli_end_to_end_with_picture(tiny_physics, tmp_path, preset, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", preset, "--data", str(tiny_physics), "--out", str(run), "--epochs", "1",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tiny_physics), "--json", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["scenes"] == 40
    assert (run / "scenes_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_command_refuses_to_overwrite(tmp_path, capsys):
    assert main(["data", "physics", "--out", str(tmp_path), "--scenes", "8", "--test-scenes", "4", "--no-progress"]) == 0
    assert main(["data", "physics", "--out", str(tmp_path), "--scenes", "8", "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_benchmark_script_smoke(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "physics.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--smoke",
                             "--presets", "physics-connections", "physics-mlp-count"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert set(json.loads((tmp_path / "summary.json").read_text())) == {"physics-connections", "physics-mlp-count"}
    assert (tmp_path / "physics-connections" / "scenes_test.png").exists()
