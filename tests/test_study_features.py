"""Training features behind the sample-efficiency study: preset overrides, the constant schedule,
evaluations on a fixed subset every N examples, grouped batches, precision auto."""

import json

import numpy as np
import pytest
import torch

from relnet.errors import ConfigError, DataError
from relnet.nn import ConvObjects, conv_stack, image_to_float
from relnet.tasks import get_preset, get_task
from relnet.tasks.sort_of_clevr.models import PixelRN
from relnet.tasks.sort_of_clevr.task import SortOfClevrSplit
from relnet.train import loop, train
from relnet.train.loop import learning_rate, resolve_precision


def test_overrides_reach_fields_and_model_entries():
    preset = get_preset("sort-of-clevr-pixels").with_overrides(
        ["lr=1e-4", "model.g_widths=[256,256]", "model.conv_order=bn-relu", "data.questions_per_image=4"])
    assert preset.lr == 1e-4 and preset.model["g_widths"] == [256, 256] and preset.model["conv_order"] == "bn-relu"
    assert preset.data == {**get_preset("sort-of-clevr-pixels").data, "questions_per_image": 4}
    assert get_preset("sort-of-clevr-pixels").lr != 1e-4  # the registered preset is untouched
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        preset.with_overrides(["model"])


def test_constant_schedule_warms_up_then_holds():
    preset = get_preset("sort-of-clevr-pixels").with_overrides(["lr=1.0", "warmup_steps=10", "schedule=constant"])
    rates = [learning_rate(preset, step, 100, 0.0, None) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9:] == [1.0] * 91


def test_cosine_can_hold_the_rate_before_it_decays():
    preset = get_preset("sort-of-clevr-pixels").with_overrides(["lr=1.0", "schedule=cosine", "decay_start=0.5"])
    rates = [learning_rate(preset, step, 100, 0.0, None) for step in range(101)]
    assert rates[:51] == [1.0] * 51 and rates[75] == pytest.approx(0.5) and rates[100] == pytest.approx(0.0)
    assert rates[51:] == sorted(rates[51:], reverse=True)
    # On a time budget the share of the time decides, as for the plain cosine.
    assert learning_rate(preset, 0, 100, 75.0, 100.0) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="decay_start"):
        preset.with_overrides(["decay_start=1.0"])


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_precision_auto_follows_native_bf16(monkeypatch, native, expected):
    monkeypatch.setattr(loop, "native_bf16_cpu", lambda: native)
    assert resolve_precision("auto", torch.device("cpu")) == expected
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


def test_eval_every_adds_subset_evaluations(tiny_sort_of_clevr, tmp_path):
    preset = get_preset("sort-of-clevr-state").with_overrides(["batch_size=8"])
    out = tmp_path / "run"
    metrics = train(get_task(preset.task), preset, tiny_sort_of_clevr, out, epochs=2, eval_every=16, eval_subset=50,
                    progress=False, precision="fp32", command="relnet train ...")
    history = json.loads((out / "history.json").read_text())
    subset = [entry for entry in history if entry["subset"]]
    full = [entry for entry in history if not entry["subset"]]
    assert len(full) == 2 and len(subset) >= 4
    assert all(entry["eval"]["questions"] == 50 for entry in subset)
    assert all(entry["eval"]["questions"] == 180 for entry in full)
    seen = [entry["questions_seen"] for entry in history]
    assert seen == sorted(seen) and seen[-1] == metrics["questions_seen"] == metrics["steps"] * 8
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["command"] == "relnet train ..." and config["options"]["eval_every"] == 16
    assert all(len(row) == 3 for row in torch.load(out / "checkpoint.pt", weights_only=True)["loss_log"])


def test_resume_keeps_the_preset_it_started_with(tiny_sort_of_clevr, tmp_path):
    task = get_task("sort-of-clevr")
    changed = get_preset("sort-of-clevr-state").with_overrides(["model.g_widths=[32,32]"])
    train(task, changed, tiny_sort_of_clevr, tmp_path / "run", epochs=1, progress=False, precision="fp32")
    # Resumed with the registered preset (as the CLI does), the run goes on with its own 32-wide g.
    metrics = train(task, get_preset("sort-of-clevr-state"), tiny_sort_of_clevr, tmp_path / "run", epochs=2,
                    resume=True, progress=False, precision="fp32")
    assert metrics["epochs"] == 2
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["preset"]["model"]["g_widths"] == [32, 32]


def test_grouped_epoch_order(tiny_sort_of_clevr):
    preset = get_preset("sort-of-clevr-pixels").with_overrides(["data.questions_per_image=4", "data.non_relational_epochs=0",
                                                               "data.relational_share=null"])
    split = get_task("sort-of-clevr").load(tiny_sort_of_clevr, "train", preset)
    order = split.epoch_order(seed=1, epoch=0, batch_size=8)
    assert sorted(order.tolist()) == list(range(len(split)))
    assert torch.equal(order, split.epoch_order(seed=1, epoch=0, batch_size=8))
    assert not torch.equal(order, split.epoch_order(seed=1, epoch=1, batch_size=8))
    # 20 questions per image of the paper's kinds: groups of 4 about one image each.
    images = split.tensors["image"][order].view(-1, 4)
    assert (images == images[:, :1]).all()
    inputs, _ = split.batch(order[:8])
    assert len(inputs["images"]) == 2 and sorted(inputs["image_index"].tolist()) == [0] * 4 + [1] * 4


def test_shared_images_give_the_same_answers_as_repeated_images():
    torch.manual_seed(0)
    model = PixelRN(11, 18, g_widths=[16, 16], f_widths=[16], conv_order="relu-bn").eval()
    images = torch.randint(0, 256, (3, 75, 75, 3), dtype=torch.uint8)
    index = torch.tensor([2, 0, 2, 1])
    question = torch.randn(4, 18)
    torch.testing.assert_close(model(images, question, index), model(images[index], question))


def test_conv_orders_and_inversion():
    assert [type(layer).__name__ for layer in conv_stack(3, [8], order="relu-bn")] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert [type(layer).__name__ for layer in conv_stack(3, [8])] == ["Conv2d", "BatchNorm2d", "ReLU"]
    with pytest.raises(ValueError, match="conv order"):
        conv_stack(3, [8], order="bn")
    white = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    assert image_to_float(white).eq(1).all() and image_to_float(white, invert=True).eq(0).all()


def test_coord_conv_tells_cells_of_a_uniform_image_apart():
    """Plain convolutions give every interior cell of a uniform image the same features; with the
    coordinate channels (CoordConv) each convolution knows where it is."""
    image = torch.full((1, 3, 160, 160), 0.5)
    for coord_conv, differ in ((False, False), (True, True)):
        torch.manual_seed(0)
        encoder = ConvObjects(3, [8, 8, 8, 8], coord_conv=coord_conv).eval()
        assert encoder.object_dim == 10
        cells = encoder(image)[0, :, :8].view(10, 10, 8)  # features without the cell coordinates
        # Cells (4, 4) and (4, 5) are out of reach of the zero padding at the border.
        assert (not torch.allclose(cells[4, 4], cells[4, 5], atol=1e-6)) == differ
    assert [type(layer).__name__ for layer in conv_stack(3, [8], coord_conv=True)][:2] == ["AddCoordinates", "Conv2d"]
    assert conv_stack(3, [8, 4], coord_conv=True)[5].in_channels == 10


def test_subset_shares_the_image_table(tiny_sort_of_clevr):
    split = get_task("sort-of-clevr").load(tiny_sort_of_clevr, "test", get_preset("sort-of-clevr-pixels"))
    part = split.subset(torch.tensor([0, 5, 7]))
    assert len(part) == 3 and part.tensors["scene"] is split.tensors["scene"]
    assert part.tensors["answer"].tolist() == split.tensors["answer"][[0, 5, 7]].tolist()


def mixed_pixels():
    """The pixel preset with every epoch the usual mix of questions (no curriculum, no share)."""
    return get_preset("sort-of-clevr-pixels").with_overrides(["data.non_relational_epochs=0", "data.relational_share=null"])


def test_curriculum_epochs_ask_non_relational_questions_only(tiny_sort_of_clevr):
    preset = mixed_pixels().with_overrides(["data.non_relational_epochs=1"])
    task = get_task("sort-of-clevr")
    split = task.load(tiny_sort_of_clevr, "train", preset)
    first, second = split.epoch_order(seed=1, epoch=0, batch_size=8), split.epoch_order(seed=1, epoch=1, batch_size=8)
    assert len(first) == len(second) == len(split)
    kinds = split.tensors["kind"]
    assert (kinds[first] == 0).all()  # non_relational only, each of them twice
    assert torch.bincount(first, minlength=len(split)).tolist() == [2 * int(kind == 0) for kind in kinds]
    assert not torch.equal(first[:len(split) // 2], first[len(split) // 2:])  # two different shuffles
    assert torch.equal(second, task.load(tiny_sort_of_clevr, "train", mixed_pixels())
                       .epoch_order(seed=1, epoch=1, batch_size=8))  # then the usual epochs
    assert task.load(tiny_sort_of_clevr, "test", preset).non_relational_epochs == 0  # never the evaluation
    for wrong in (["data.non_relational_epochs=-1"], ["data.non_relational_epochs=1", 'data.kinds=["binary"]'],
                  ["data.non_relational_epochs=1", "data.questions_per_image=4"]):
        with pytest.raises(ConfigError, match="non_relational_epochs"):
            task.load(tiny_sort_of_clevr, "train", mixed_pixels().with_overrides(wrong))


def test_a_fractional_curriculum_ends_within_an_epoch(tiny_sort_of_clevr):
    task = get_task("sort-of-clevr")
    split = task.load(tiny_sort_of_clevr, "train", mixed_pixels().with_overrides(["data.non_relational_epochs=1.5"]))
    usual = task.load(tiny_sort_of_clevr, "train", mixed_pixels())
    kinds, half = split.tensors["kind"], round(0.5 * len(split))
    assert (kinds[split.epoch_order(seed=1, epoch=0, batch_size=8)] == 0).all()
    second = split.epoch_order(seed=1, epoch=1, batch_size=8)
    assert len(second) == len(split) and (kinds[second[:half]] == 0).all()  # the curriculum's last half epoch
    assert torch.equal(second[half:], usual.epoch_order(seed=1, epoch=1, batch_size=8)[half:])  # then the usual mix
    assert (kinds[second[half:]] != 0).any()
    assert torch.equal(split.epoch_order(seed=1, epoch=2, batch_size=8), usual.epoch_order(seed=1, epoch=2, batch_size=8))
    with pytest.raises(ConfigError, match="non_relational_epochs must be a number of epochs"):
        task.load(tiny_sort_of_clevr, "train", mixed_pixels().with_overrides(['data.non_relational_epochs="1"']))


def test_relational_mix_sets_the_subtypes_of_the_relational_questions(tiny_sort_of_clevr):
    mix = 'data.relational_mix={"closest_shape": 0.6, "furthest_shape": 0.4}'
    preset = mixed_pixels().with_overrides(["data.relational_share=0.5", mix])
    task = get_task("sort-of-clevr")
    split = task.load(tiny_sort_of_clevr, "train", preset)
    order = split.epoch_order(seed=1, epoch=0, batch_size=8)
    kind, subtype = split.tensors["kind"][order], split.tensors["subtype"][order]
    relational = round(0.5 * len(split))
    assert len(order) == len(split) and (kind == 0).sum() == len(split) - relational
    assert (kind == 1).sum() == relational and ((kind == 1) & (subtype == 2)).sum() == 0  # no count questions
    closest = ((kind == 1) & (subtype == 0)).sum()
    assert closest == round(0.6 * relational) and ((kind == 1) & (subtype == 1)).sum() == relational - closest
    asked = set(torch.nonzero((split.tensors["kind"] == 1) & (split.tensors["subtype"] < 2)).flatten().tolist())
    assert set(order[kind == 1].tolist()) == asked  # every closest and furthest question, some twice
    assert torch.equal(order, task.load(tiny_sort_of_clevr, "train", preset).epoch_order(seed=1, epoch=0, batch_size=8))
    assert task.load(tiny_sort_of_clevr, "test", preset).relational_mix is None  # never the evaluation
    for wrong in (['data.relational_mix={"closest_shape": 1.0}'],  # without data.relational_share
                  ["data.relational_share=0.5", 'data.relational_mix={"closest_shape": 0.5}'],
                  ["data.relational_share=0.5", 'data.relational_mix={"closest_shape": 1.5, "furthest_shape": -0.5}'],
                  ["data.relational_share=0.5", 'data.relational_mix={"count_between": 1.0}'],  # not among data.kinds
                  ["data.relational_share=0.5", 'data.relational_mix={"shape": 1.0}'],
                  ["data.relational_share=0.5", 'data.relational_mix={"closest_shape": NaN, "furthest_shape": 1.0}'],
                  ["data.relational_share=0.5", 'data.relational_mix=[0.5, 0.5]']):
        with pytest.raises(ConfigError, match="relational_mix"):
            task.load(tiny_sort_of_clevr, "train", mixed_pixels().with_overrides(wrong))
    # A split without the questions a mix asks for is told so when it is loaded, not hours later.
    arrays = dict(np.load(tiny_sort_of_clevr / "train.npz"))
    arrays["q_subtype"] = np.where(arrays["q_kind"] == 1, 2, arrays["q_subtype"]).astype(np.int8)  # count only
    with pytest.raises(DataError, match="closest_shape: the train split has no such questions"):
        SortOfClevrSplit(arrays, True, "train", ("non_relational", "binary"), relational_share=0.5,
                         relational_mix={"closest_shape": 0.5, "furthest_shape": 0.5})


def test_relational_share_sets_the_mix_of_the_epochs_after_the_curriculum(tiny_sort_of_clevr):
    preset = mixed_pixels().with_overrides(["data.non_relational_epochs=1",
                                                                "data.relational_share=0.75"])
    task = get_task("sort-of-clevr")
    split = task.load(tiny_sort_of_clevr, "train", preset)
    kinds = split.tensors["kind"]
    assert (kinds[split.epoch_order(seed=1, epoch=0, batch_size=8)] == 0).all()  # the curriculum comes first
    later = split.epoch_order(seed=1, epoch=1, batch_size=8)
    assert len(later) == len(split)
    assert (kinds[later] != 0).sum() == round(0.75 * len(split))
    relational = torch.nonzero(kinds != 0).flatten()
    assert set(later[kinds[later] != 0].tolist()) == set(relational.tolist())  # every relational question, some twice
    assert not torch.equal(later, split.epoch_order(seed=1, epoch=2, batch_size=8))
    assert torch.equal(later, task.load(tiny_sort_of_clevr, "train", preset).epoch_order(seed=1, epoch=1, batch_size=8))
    assert task.load(tiny_sort_of_clevr, "test", preset).relational_share is None  # never the evaluation
    for wrong in (["data.relational_share=1.0"], ["data.relational_share=0"], ['data.relational_share="half"'],
                  ["data.relational_share=0.5", 'data.kinds=["binary"]'],
                  ["data.relational_share=0.5", 'data.kinds=["non_relational","non_relational"]'],
                  ["data.relational_share=0.5", "data.questions_per_image=4"]):
        with pytest.raises(ConfigError, match="relational_share"):
            task.load(tiny_sort_of_clevr, "train", mixed_pixels().with_overrides(wrong))

    # A split without relational questions (its own data, not the preset's kinds) is told so, not divided by zero.
    only = task.load(tiny_sort_of_clevr, "train", preset)
    only.tensors = {name: tensor if name == "scene" else tensor[only.tensors["kind"] == 0]
                    for name, tensor in only.tensors.items()}
    with pytest.raises(DataError, match="no questions of a kind"):
        only.epoch_order(seed=1, epoch=1, batch_size=8)
