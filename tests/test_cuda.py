"""The GPU paths: each test runs on the CPU and, where a CUDA GPU is present, on it too.

`pytest -m cuda` runs the GPU half only (benchmarks/gpu.py does, on a GPU machine); without a GPU
those cases are skipped and the CPU half checks the same code.
"""

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

from relnet import RelationNetwork
from relnet.cli import main
from relnet.tasks import PRESETS
from relnet.train.checkpoint import load_checkpoint
from relnet.train.loop import autocast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import preset_batch  # noqa: E402

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])]


def small_rn(**options) -> RelationNetwork:
    torch.manual_seed(0)
    return RelationNetwork(5, 7, question_dim=3, g_widths=[16, 16], f_widths=[16], **options)


@pytest.mark.parametrize("device", DEVICES)
def test_masked_chunked_rn_matches_the_plain_rn_on_cpu(device):
    """Chunked pairs and masks on the device give the plain CPU RN's outputs and gradients;
    padded objects, whatever they hold, change nothing."""
    plain = small_rn()
    chunked = copy.deepcopy(plain).to(device)
    chunked.pair_chunk_size = 2
    objects, question = torch.randn(4, 6, 5), torch.randn(4, 3)
    mask = torch.rand(4, 6) > 0.3
    mask[:, 0] = True
    expected = plain(objects.masked_fill(~mask[..., None], 0.0), question, ~mask)
    expected.sum().backward()
    garbage = objects.masked_fill(~mask[..., None], 1e3)
    got = chunked(garbage.to(device), question.to(device), ~mask.to(device))
    got.sum().backward()
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-4)
    for (name, mine), theirs in zip(chunked.named_parameters(), plain.parameters()):
        torch.testing.assert_close(mine.grad.cpu(), theirs.grad, rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_runs_g_in_bf16_and_stays_close(device):
    rn = small_rn().to(device)
    objects, question = torch.randn(8, 6, 5, device=device), torch.randn(8, 3, device=device)
    seen = []
    rn.g.rest.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    full = rn(objects, question)
    with autocast(torch.device(device), "bf16"):
        half = rn(objects, question)
    assert seen == [torch.float32, torch.bfloat16]
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.05)


def test_text_lstm_runs_in_fp32_under_bf16_autocast_on_a_cpu_without_bf16(monkeypatch):
    """oneDNN has no bf16 LSTM for CPUs without bf16 instructions: there the question and story
    LSTMs run in fp32 inside a bf16 run (on CPUs with them, and on CUDA, in bf16)."""
    from relnet.nn import SequenceEncoder, text

    monkeypatch.setattr(text, "native_bf16_cpu", lambda: False)
    torch.manual_seed(0)
    encoder = SequenceEncoder(torch.nn.Embedding(9, 6, padding_idx=0), 8)
    tokens, lengths = torch.randint(1, 9, (5, 7)), torch.tensor([7, 3, 1, 5, 2])
    with autocast(torch.device("cpu"), "bf16"):
        mixed = encoder(tokens, lengths)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, encoder(tokens, lengths), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_trains_a_step_in_bf16(small_datasets, device, name):
    preset = PRESETS[name]
    task, model, inputs, targets = preset_batch(preset, small_datasets[preset.task], 4, device)
    with autocast(torch.device(device), "bf16"):
        loss = task.loss(model(**inputs), targets)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(grad is not None and grad.device.type == device and torch.isfinite(grad).all() for grad in grads)
    assert any(grad.abs().sum() > 0 for grad in grads)


@pytest.mark.parametrize("device", DEVICES)
def test_run_trained_on_the_device_loads_and_evaluates_on_cpu(tiny_sort_of_clevr, tmp_path, device):
    run = tmp_path / "run"
    assert main(["train", "--preset", "sort-of-clevr-state", "--data", str(tiny_sort_of_clevr), "--out", str(run),
                 "--epochs", "2", "--device", device, "--precision", "fp32", "--no-progress"]) == 0
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["options"]["device"].startswith(device)
    assert all(tensor.device.type == "cpu" for tensor in state["model"].values())
    assert main(["eval", str(run), "--data", str(tiny_sort_of_clevr), "--device", "cpu", "--precision", "fp32",
                 "--no-progress"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    evaluated = json.loads((run / "eval_test.json").read_text())
    # The device's matmuls (TF32 on CUDA) may flip an answer or two of 180.
    assert evaluated["overall"] == pytest.approx(trained["overall"], abs=0.02)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["sort-of-clevr-pixels", "babi", "physics-count", "clevr-state", "clevr-pixels"])
def test_examples_are_explained_and_asked_on_the_device(small_datasets, device, name):
    """relnet explain / serve on the device: views, typed questions and attribution on a split moved there."""
    from relnet.look import explain_example
    from relnet.tasks import get_task

    preset = PRESETS[name]
    task = get_task(preset.task)
    split = task.load(small_datasets[preset.task], task.eval_split, preset)
    info = split.info()
    torch.manual_seed(0)
    model = task.build_model(preset, info).to(device)
    question = {"sort-of-clevr": "Is the red object on the left?", "babi": "Where is mary?",
                "clevr": "How many red things are there?"}.get(preset.task)
    explained = explain_example(task, preset, info, model, split.to(device), 1, question)
    assert explained.relation.pairs.sum() == pytest.approx(explained.relation.linearized, rel=1e-3, abs=1e-4)
