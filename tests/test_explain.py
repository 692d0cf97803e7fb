"""Pair attribution (relnet.explain), the per-benchmark views and `relnet explain`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from relnet import RelationNetwork
from relnet.cli import main
from relnet.errors import ConfigError
from relnet.explain import pair_attribution
from relnet.look import explain_example
from relnet.look.figure import DPI, SIZE_INCHES, draw
from relnet.tasks import PRESETS, get_task

PICTURE_SIZE = (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))


def random_batch(seed=0, batch=4, objects=7, masked=True):
    generator = torch.Generator().manual_seed(seed)
    padding = torch.rand(batch, objects, generator=generator) < 0.3 if masked else None
    return {"objects": torch.randn(batch, objects, 5, generator=generator),
            "question": torch.randn(batch, 3, generator=generator), "padding_mask": padding}


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
@pytest.mark.parametrize("chunk", [None, 2])
@pytest.mark.parametrize("versus", [None, "runner-up"])
def test_pairs_add_up_to_the_linearized_logit(aggregation, chunk, versus):
    torch.manual_seed(0)
    rn = RelationNetwork(5, 6, 3, (16, 16), (16,), dropout=0.3, aggregation=aggregation, pair_chunk_size=chunk).train()
    inputs = random_batch()
    result = pair_attribution(rn, inputs, versus=versus)
    assert rn.training  # pair_attribution restores the mode it found
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, atol=1e-5)
    assert torch.allclose(result.objects.sum(1), result.linearized, atol=1e-5)
    # The explained value is the model's own logit (margin), computed in eval mode, and the
    # direction d is its gradient at the aggregate: d · r computed here by plain autograd.
    rn.eval()
    aggregate = rn.relations(**inputs).detach().requires_grad_(True)
    value = rn.f(aggregate).gather(1, result.answer[:, None]).squeeze(1)
    if versus:
        value = value - rn.f(aggregate).gather(1, result.versus[:, None]).squeeze(1)
    direction, = torch.autograd.grad(value.sum(), aggregate)
    assert torch.allclose((direction * aggregate).sum(1), result.linearized, atol=1e-5)
    with torch.no_grad():
        outputs = rn(**inputs)
    expected = outputs.gather(1, result.answer[:, None]).squeeze(1)
    if versus:
        assert (result.versus != result.answer).all()
        expected = expected - outputs.gather(1, result.versus[:, None]).squeeze(1)
    assert torch.allclose(result.logit, expected, atol=1e-5)
    # Padded objects take part in no pair.
    padded = inputs["padding_mask"]
    assert (result.pairs[padded.unsqueeze(2).expand_as(result.pairs)] == 0).all()
    assert (result.pairs.transpose(1, 2)[padded.unsqueeze(2).expand_as(result.pairs)] == 0).all()


def test_mode_is_restored_and_a_chosen_answer_is_explained():
    rn = RelationNetwork(5, 6, 3, (16,), (16,), dropout=0.5).train()
    answer = torch.tensor([5, 4, 3, 2])
    result = pair_attribution(rn, random_batch(masked=False), answer=answer)
    assert rn.training and torch.equal(result.answer, answer)
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, atol=1e-5)


def test_with_a_linear_f_the_pairs_and_the_bias_make_the_logit():
    torch.manual_seed(3)
    rn = RelationNetwork(5, 6, 3, (16, 16), ())  # f is one linear layer: the linearization is exact
    result = pair_attribution(rn, random_batch())
    bias = rn.f[-1].bias if isinstance(rn.f, torch.nn.Sequential) else rn.f.bias
    assert torch.allclose(result.pairs.sum((1, 2)) + bias.detach()[result.answer], result.logit, atol=1e-5)


def test_exact_inside_the_callers_autocast():
    torch.manual_seed(4)
    rn = RelationNetwork(5, 6, 3, (64, 64), (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = pair_attribution(rn, random_batch())
    assert result.pairs.dtype == torch.float32
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, atol=1e-5)


def test_attribution_follows_the_objects_when_they_are_reordered():
    torch.manual_seed(1)
    rn = RelationNetwork(5, 6, 3, (16, 16), (16,))
    inputs = random_batch(seed=2)
    order = torch.randperm(7)
    moved = {**inputs, "objects": inputs["objects"][:, order], "padding_mask": inputs["padding_mask"][:, order]}
    before, after = pair_attribution(rn, inputs), pair_attribution(rn, moved)
    assert torch.equal(before.answer, after.answer)
    assert torch.allclose(after.pairs, before.pairs[:, order][:, :, order], atol=1e-5)
    assert torch.allclose(after.objects, before.objects[:, order], atol=1e-5)


def test_a_model_without_an_rn_is_refused():
    with pytest.raises(ValueError, match="has no RelationNetwork"):
        pair_attribution(torch.nn.Linear(3, 2), {"input": torch.zeros(1, 3)})


def test_a_model_calling_its_rn_once_per_symmetry_has_the_calls_added_up():
    """The counting RN with the box's symmetries averages its RN over eight maps of the scene: the
    pairs add up to the sum of the eight linearizations, and equal the sum of each map explained alone."""
    from relnet.nn.symmetry import box_symmetries
    from relnet.tasks.physics.simulate import NUM_BALLS, NUM_FRAMES
    from relnet.tasks.physics.models import CountRN

    torch.manual_seed(0)
    symmetric = CountRN(5, g_widths=[16, 16], f_widths=[16], symmetries="d4")
    plain = CountRN(5, g_widths=[16, 16], f_widths=[16])
    plain.load_state_dict(symmetric.state_dict())
    balls = torch.randn(2, NUM_BALLS, 2 * NUM_FRAMES)
    result = pair_attribution(symmetric, {"trajectories": balls})
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(result.answer, symmetric.eval()(balls).argmax(-1))
    # The mean over the maps makes each map's direction its own divided by 8: exactly, f need not be linear.
    maps = [pair_attribution(plain, {"trajectories": image}, answer=result.answer) for image in box_symmetries(balls)]
    assert torch.allclose(result.pairs, sum(one.pairs for one in maps) / 8, atol=1e-5)


def test_calls_of_the_rn_on_different_objects_are_refused():
    class TwoViews(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rn = RelationNetwork(5, 6, 0, (8,), (8,))

        def forward(self, objects):
            return self.rn(objects) + self.rn(objects[:, :-1])

    with pytest.raises(ValueError, match="2 times on different objects"):
        pair_attribution(TwoViews(), {"objects": torch.randn(2, 4, 5)})


RN_PRESETS = sorted(name for name, preset in PRESETS.items()
                    if preset.model.get("architecture", "rn") == "rn" and preset.model.get("kind", "rn").endswith("rn"))


@pytest.mark.parametrize("name", RN_PRESETS)
def test_every_rn_explains_an_example_of_its_data(name, small_datasets, tmp_path):
    from common import sized_to_cache  # benchmarks/, on the path through the small_datasets fixture

    preset = sized_to_cache(PRESETS[name], small_datasets[PRESETS[name].task])  # CPU-sized CLEVR: the small cache's size
    task = get_task(preset.task)
    split = task.load(small_datasets[preset.task], task.eval_split, preset)
    torch.manual_seed(0)
    model = task.build_model(preset, split.info())
    explained = explain_example(task, preset, split.info(), model, split, 1)
    relation, view = explained.relation, explained.view
    assert relation.pairs.shape == (len(relation.objects),) * 2 and view.question
    if relation.linearized is not None:  # physics-connections shows its per-pair answer itself
        assert relation.pairs.sum() == pytest.approx(relation.linearized, rel=1e-3, abs=1e-4)
    if relation.threshold is None:  # an answer among the answers, not a set of pairs
        assert relation.answer == relation.top[0][0]
    path = tmp_path / "picture.png"
    draw(explained, path)
    with Image.open(path) as picture:
        assert picture.size == PICTURE_SIZE


def test_cli_explain_writes_the_picture_and_json(tmp_path, capsys):
    out = tmp_path / "state.png"
    assert main(["explain", "pretrained:sort-of-clevr-state", "--index", "3", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    with Image.open(out) as picture:
        assert picture.size == PICTURE_SIZE
    assert report["answer"] == report["top"][0][0] and len(report["objects"]) == 6
    assert sum(map(sum, report["pairs"])) == pytest.approx(report["linearized"], rel=1e-3)
    assert main(["explain", "pretrained:physics-connections", "--index", "1", "--out", str(tmp_path / "p.png")]) == 0
    assert "Which balls are joined by springs?" in capsys.readouterr().out
    assert main(["explain", "pretrained:sort-of-clevr-pixels", "--question", "Is the red object on the left?",
                 "--out", str(tmp_path / "asked.png")]) == 0
    printed = capsys.readouterr().out
    assert "Is the red object on the left?" in printed and "truth" in printed  # computed from the scene


@pytest.mark.parametrize("argv, message", [
    (["pretrained:sort-of-clevr-state", "--index", "100000"], "example 100000 is out of range"),
    (["pretrained:sort-of-clevr-state", "--question", "Why?"], "is not one of this model's"),
    (["pretrained:babi"], "babi has no generator of new examples"),
    (["pretrained:nope"], "no pretrained model 'nope'"),
    (["pretrained:sort-of-clevr-state", "--split", "test"], "--split test needs --data"),
])
def test_cli_explain_errors_are_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "never.png"
    assert main(["explain", *argv, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and error.startswith("relnet: error:")
    assert not out.exists()


def test_cli_explain_refuses_a_negative_seed(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "pretrained:sort-of-clevr-state", "--seed", "-1"])
    assert "expected a whole number >= 0, got '-1'" in capsys.readouterr().err


@pytest.mark.parametrize("preset, data", [("sort-of-clevr-state-mlp", "sort-of-clevr"),
                                          ("physics-mlp-connections", "physics-connections")])
def test_cli_explain_refuses_a_baseline(preset, data, small_datasets, tmp_path, capsys):
    run = tmp_path / "mlp"
    assert main(["train", "--preset", preset, "--data", str(small_datasets[data]), "--out", str(run),
                 "--epochs", "1", "--no-progress"]) == 0
    assert main(["explain", str(run), "--data", str(small_datasets[data]), "--out", str(tmp_path / "x.png")]) == 2
    assert "baselines have no pairs to show" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_babi_story_questions_can_be_typed(small_datasets, tmp_path, capsys):
    out = tmp_path / "babi.png"
    assert main(["explain", "pretrained:babi", "--data", str(small_datasets["babi"]), "--index", "2",
                 "--question", "Where is zorblax mary?", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "unknown words (read as unknown): zorblax" in printed
    assert main(["explain", "pretrained:babi", "--data", str(small_datasets["babi"]), "--question", "zorblax?"]) == 2
    assert "has no word the model knows" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["clevr-state", "clevr-pixels"])
def test_clevr_new_scenes_and_typed_questions(name, small_datasets):
    preset = PRESETS[name]
    task = get_task(preset.task)
    info = task.load(small_datasets["clevr"], "val", preset).info()
    torch.manual_seed(0)
    model = task.build_model(preset, info)
    scenes = task.generated_split(preset, info, 2, seed=3)
    again = task.generated_split(preset, info, 2, seed=3)
    assert len(scenes) >= 2 and all(torch.equal(scenes.tensors[key], again.tensors[key]) for key in scenes.tensors)
    assert ("images" in scenes.tensors) == (preset.data["inputs"] == "pixels")  # no renders for a state model
    own = explain_example(task, preset, info, model, scenes, 0)
    assert own.view.truth is not None and own.view.question.endswith("?")
    asked = explain_example(task, preset, info, model, scenes, 0, question="How many zorbs are red?")
    assert asked.unknown_words == ["zorbs"] and asked.view.truth is None
    assert asked.relation.pairs.sum() == pytest.approx(asked.relation.linearized, rel=1e-3, abs=1e-4)


class OwnHead(torch.nn.Module):
    """A user's model: the RN's aggregate (rn.relations) into a head of its own."""

    def __init__(self, outputs=6):
        super().__init__()
        self.rn = RelationNetwork(5, 6, 3, (16, 16), (16,))
        self.head = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, outputs))

    def forward(self, objects, question, padding_mask=None):
        return self.head(self.rn.relations(objects, question, padding_mask))


@pytest.mark.parametrize("outputs", [6, 1])
def test_a_model_with_its_own_head_on_the_aggregate_is_explained(outputs):
    """Issue 25, defect 5: `KeyError: 'aggregate'` when forward used rn.relations(...); a single-logit
    (BCE) model was explained as "class 0"."""
    torch.manual_seed(0)
    model = OwnHead(outputs)
    inputs = random_batch()
    result = pair_attribution(model, inputs)
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, atol=1e-5)
    aggregate = model.rn.relations(**inputs).detach().requires_grad_(True)
    logits = model.head(aggregate)
    value = logits[:, 0] if outputs == 1 else logits.gather(1, result.answer[:, None]).squeeze(1)
    direction, = torch.autograd.grad(value.sum(), aggregate)
    assert torch.allclose((direction * aggregate).sum(1), result.linearized, atol=1e-5)
    assert torch.allclose(result.logit, value.detach(), atol=1e-6)
    if outputs == 1:
        assert torch.equal(result.answer, (value > 0).long()) and result.versus is None
        with pytest.raises(ValueError, match="single output logit"):
            pair_attribution(model, inputs, versus="runner-up")
    assert "relations" not in vars(model.rn)  # the RN is left as it was found


def test_a_bf16_model_is_explained_in_its_dtype():
    """Issue 25, defect 5: a bf16 model failed with a dtype error."""
    torch.manual_seed(0)
    rn = RelationNetwork(5, 6, 3, (16, 16), (16,)).to(torch.bfloat16)
    inputs = {name: value.to(torch.bfloat16) if value.is_floating_point() else value
              for name, value in random_batch().items()}
    result = pair_attribution(rn, inputs)
    assert result.pairs.dtype == torch.float32
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, rtol=0.05, atol=0.05)


def test_self_pairs_left_out_take_no_share():
    torch.manual_seed(0)
    rn = RelationNetwork(5, 6, 3, (16, 16), (16,), self_pairs=False, aggregation="mean")
    result = pair_attribution(rn, random_batch())
    assert result.pairs.diagonal(dim1=1, dim2=2).eq(0).all()
    assert torch.allclose(result.pairs.sum((1, 2)), result.linearized, atol=1e-5)


def test_a_model_whose_forward_skips_its_rn_is_refused():
    class Bypass(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rn, self.head = RelationNetwork(5, 6), torch.nn.Linear(5, 6)

        def forward(self, objects):
            return self.head(objects.sum(1))

    with pytest.raises(ValueError, match="did not call its RelationNetwork"):
        pair_attribution(Bypass(), {"objects": torch.randn(2, 3, 5)})


def test_an_image_given_to_a_model_that_reads_none_is_refused(small_datasets):
    preset = PRESETS["clevr-state"]
    task = get_task(preset.task)
    split = task.load(small_datasets["clevr"], task.eval_split, preset)
    model = task.build_model(preset, split.info())
    with pytest.raises(ConfigError, match="reads no images .*objects"):
        explain_example(task, preset, split.info(), model, split, 0, image=np.zeros((8, 8, 3), np.uint8))
