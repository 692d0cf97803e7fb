import copy
import io
import subprocess
import sys
import json
import tarfile
from pathlib import Path

import pytest
import torch

from relnet.cli import main
from relnet.errors import ConfigError, DataError
from relnet.nn.text import SENTENCE_ENCODERS, SequenceEncoder, WordPermutation, WordSlotEncoder
from relnet.tasks import get_preset, get_task
from relnet.tasks.babi import summarize
from relnet.tasks.babi.data import TASK_NAMES, read_file, task_file
from relnet.tasks.babi.models import TextRN

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "babi"

STORY_1 = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Where is Sandra? \toffice\t1
"""
STORY_8 = """1 Mary got the football there.
2 Mary picked up the apple.
3 What is Mary carrying?\tfootball,apple\t1 2
"""


def write_tasks(directory: Path, split: str, texts: dict[int, str], official_names: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for task, text in texts.items():
        name = f"qa{task}_{TASK_NAMES[task]}_{split}.txt" if official_names else f"qa{task}_{split}.txt"
        (directory / name).write_text(text)
    return directory


def preset_for(tasks, **model):
    preset = get_preset("babi")
    return type(preset)(**{**preset.to_dict(), "data": {"tasks": tasks, "max_story": 20},
                           "model": {**preset.model, "g_widths": [16, 16], "f_widths": [16], **model},
                           "batch_size": 2, "eval_batch_size": 3})


@pytest.fixture
def tiny_babi(tmp_path) -> Path:
    data = tmp_path / "en-valid"
    write_tasks(data, "train", {1: STORY_1, 8: STORY_8})
    write_tasks(data, "valid", {1: STORY_1.replace("Mary", "Bill"), 8: STORY_8.replace("apple", "milk")})
    return data


def test_reader_splits_stories_and_keeps_statements_only(tmp_path):
    data = write_tasks(tmp_path, "train", {1: STORY_1, 8: STORY_8}, official_names=True)
    examples = read_file(task_file(data, 1, "train"), 1)
    assert [ex.answer for ex in examples] == ["bathroom", "hallway", "office"]
    assert examples[0].story == [("mary", "moved", "to", "the", "bathroom"), ("john", "went", "to", "the", "hallway")]
    assert examples[1].question == ("where", "is", "daniel")
    assert len(examples[1].story) == 3  # the earlier question is not a statement
    assert examples[2].story == [("sandra", "travelled", "to", "the", "office")]  # ID 1 starts a new story
    assert read_file(task_file(data, 8, "train"), 8)[0].answer == "football,apple"  # one answer class


def test_story_keeps_the_most_recent_statements(tmp_path):
    lines = [f"{i} Mary went to room{i}." for i in range(1, 26)] + ["26 Where is Mary?\troom25\t25"]
    path = tmp_path / "qa1_train.txt"
    path.write_text("\n".join(lines) + "\n")
    (example,) = read_file(path, 1, max_story=20)
    assert len(example.story) == 20 and example.story[0][-1] == "room6" and example.story[-1][-1] == "room25"


@pytest.mark.parametrize("text, message", [
    ("x Mary moved.\n", ":1: expected 'ID text'"),
    ("1 Mary moved.\n3 Where is Mary?\tkitchen\t1\n", ":2: sentence ID 3 does not follow 1"),
    ("1 Mary moved.\n2 Where is Mary?\t\t1\n", ":2: expected 'ID question<TAB>answer"),
    ("1 Mary moved.\n", "no questions found"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "qa1_train.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_file(path, 1)
    assert str(path) in str(error.value)


def test_missing_file_names_both_layouts(tmp_path):
    with pytest.raises(DataError, match="qa2_two-supporting-facts_test.txt or qa2_test.txt"):
        task_file(tmp_path, 2, "test")


def test_splits_share_the_train_vocabulary(tiny_babi, capsys):
    task, preset = get_task("babi"), preset_for([1, 8])
    train = task.load(tiny_babi, "train", preset)
    valid = task.load(tiny_babi, "valid", preset, train.info())
    info = train.info()
    assert info["answers"] == ["bathroom", "football,apple", "hallway", "office"]
    assert valid.info() is info
    warning = capsys.readouterr().err
    assert "words mapped to <unk>" in warning  # "bill" and "milk" were never seen in training
    assert valid.tensors["answers"].tolist() == [0, 2, 3, -1]  # an unseen answer can never be right
    # Without info, a non-train split builds the vocabulary from the train files, not its own.
    assert task.load(tiny_babi, "valid", preset).info()["words"] == info["words"]


def test_batches_trim_padding_and_mask_the_rest(tiny_babi):
    task, preset = get_task("babi"), preset_for([1, 8])
    split = task.load(tiny_babi, "train", preset)
    inputs, targets = split.batch(torch.tensor([2, 0]))  # stories of 1 and 2 statements
    assert inputs["story"].shape[:2] == (2, 2) and inputs["story_mask"].tolist() == [[True, False], [True, True]]
    words = split.info()["words"]
    assert [words[i] for i in inputs["story"][1, 0, :inputs["sentence_lengths"][1, 0]]] == \
        ["mary", "moved", "to", "the", "bathroom"]
    assert [split.info()["answers"][i] for i in targets] == ["office", "bathroom"]


def test_bucketed_epoch_order_is_a_reproducible_permutation(tiny_babi):
    split = get_task("babi").load(tiny_babi, "train", preset_for([1, 8]))
    order = split.epoch_order(seed=1, epoch=2, batch_size=2)
    assert sorted(order.tolist()) == list(range(len(split)))
    assert torch.equal(order, split.epoch_order(seed=1, epoch=2, batch_size=2))
    lengths = split.tensors["story_lengths"].clone()
    split.tensors["story_lengths"] = torch.arange(100) % 7  # a larger split: batches have equal lengths
    split.tensors["answers"] = torch.zeros(100, dtype=torch.long)
    batches = split.tensors["story_lengths"][split.epoch_order(0, 0, 10)].view(10, 10)
    assert (batches.max(1).values - batches.min(1).values).sum() <= 6
    split.tensors["story_lengths"] = lengths


def test_oversampled_tasks_get_their_factor_of_the_steps(tiny_babi):
    preset = preset_for([1, 8])
    preset = type(preset)(**{**preset.to_dict(), "data": {**preset.data, "oversample": {"8": 3}}})
    split = get_task("babi").load(tiny_babi, "train", preset)
    split.tensors["tasks"] = torch.tensor([1] * 300 + [8] * 100)  # a larger split: 3 of task 1 per task 8
    split.tensors["story_lengths"] = torch.ones(400, dtype=torch.long)
    seen = torch.cat([split.epoch_order(seed=0, epoch=epoch, batch_size=4) for epoch in range(20)])
    share = (split.tensors["tasks"][seen] == 8).double().mean().item()
    assert len(seen) == 20 * 400 and share == pytest.approx(0.5, abs=0.03)  # 300 of 600 in the pool
    assert torch.equal(split.epoch_order(1, 2, 4), split.epoch_order(1, 2, 4))
    assert get_task("babi").load(tiny_babi, "valid", preset).oversample == {}


@pytest.mark.parametrize("oversample, message", [({"5": 2}, "not one of the tasks"), ({"8": 0}, "whole number"),
                                                 ({"8": 1.5}, "whole number"), ([8], "must map tasks")])
def test_bad_oversampling_is_refused(tiny_babi, oversample, message):
    preset = preset_for([1, 8])
    preset = type(preset)(**{**preset.to_dict(), "data": {**preset.data, "oversample": oversample}})
    with pytest.raises(ConfigError, match=message):
        get_task("babi").load(tiny_babi, "train", preset)


def test_sequence_encoder_returns_the_state_after_the_last_real_token():
    torch.manual_seed(0)
    encoder = SequenceEncoder(torch.nn.Embedding(10, 4, padding_idx=0), 5)
    tokens = torch.tensor([[3, 4, 5, 0, 0], [7, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    out = encoder(tokens, torch.tensor([3, 1, 0]))
    _, (alone, _) = encoder.lstm(encoder.embedding(tokens[:1, :3]))
    torch.testing.assert_close(out[0], alone[0, 0])
    assert torch.equal(out[2], torch.zeros(5))


def test_sequence_encoder_in_length_groups_gives_the_states_of_one_run():
    torch.manual_seed(0)
    grouped = SequenceEncoder(torch.nn.Embedding(30, 6, padding_idx=0), 7, length_groups=4, min_group=8)
    whole = copy.deepcopy(grouped)
    whole.length_groups = 1
    runs = []
    grouped.lstm.register_forward_hook(lambda module, inputs, output: runs.append(inputs[0].shape[:2]))
    lengths = torch.randint(0, 13, (2, 20))  # 40 sequences (some empty): 4 groups of 10
    tokens = torch.randint(1, 30, (2, 20, 12)) * (torch.arange(12) < lengths.unsqueeze(-1))
    out = grouped(tokens, lengths)
    expected = whole(tokens, lengths)
    torch.testing.assert_close(out, expected)
    assert [batch for batch, _ in runs] == [10] * 4  # four runs, each trimmed to its own longest
    assert [steps for _, steps in runs] == sorted(steps for _, steps in runs) and runs[0][1] < 12
    out.sum().backward()
    expected.sum().backward()  # the same gradients through the regrouping
    torch.testing.assert_close(grouped.lstm.weight_ih_l0.grad, whole.lstm.weight_ih_l0.grad)
    assert torch.equal(out[lengths == 0], torch.zeros(int((lengths == 0).sum()), 7))


def test_word_slot_encoder_puts_each_word_in_its_own_slot():
    embedding = torch.nn.Embedding(10, 3, padding_idx=0)
    encoder = WordSlotEncoder(embedding, slots=4)
    tokens = torch.tensor([[[3, 4, 5, 0, 0, 0], [7, 1, 2, 6, 8, 9]]])  # [1, 2, 6]: one short, one cut at 4 words
    out = encoder(tokens, torch.tensor([[3, 6]]))
    assert out.shape == (1, 2, 12)
    torch.testing.assert_close(out[0, 0], torch.cat([embedding.weight[3], embedding.weight[4], embedding.weight[5],
                                                      torch.zeros(3)]))
    torch.testing.assert_close(out[0, 1], embedding.weight[[7, 1, 2, 6]].flatten())
    stale = tokens.clone()
    stale[0, 0, 3:] = 9  # what lies after a statement's length is padding, whatever it holds
    assert torch.equal(encoder(stale, torch.tensor([[3, 6]])), out)
    narrow = encoder(tokens[..., :2], torch.tensor([[2, 2]]))  # fewer columns than slots: padded
    torch.testing.assert_close(narrow[..., :6], out[..., :6])
    assert torch.equal(narrow[..., 6:], torch.zeros(1, 2, 6))
    with pytest.raises(ValueError, match="padding_idx=0"):
        WordSlotEncoder(torch.nn.Embedding(10, 3), slots=4)


def test_text_rn_with_word_slots_trains_and_refuses_unknown_encoders(tiny_babi):
    task = get_task("babi")
    split = task.load(tiny_babi, "train", preset_for([1, 8]))
    model = task.build_model(preset_for([1, 8], sentence_encoder="words", sentence_words=5), split.info())
    assert isinstance(model.sentence_encoder, WordSlotEncoder)
    assert model.rn.object_dim == 5 * 32 + 20  # five word slots of the 32-wide embedding, then the position tag
    inputs, targets = split.batch(torch.arange(len(split)))
    loss = task.loss(model.train()(**inputs), targets)
    loss.backward()
    assert torch.isfinite(loss)
    # The answer reads the statements' words through the slots (the question's LSTM shares the embedding).
    story = inputs["story"].clone()
    story[0, 0, 0] = 1 if story[0, 0, 0] != 1 else 2  # the first word of the first (real) statement
    with torch.no_grad():
        model.eval()
        assert not torch.equal(model(**{**inputs, "story": story})[0], model(**inputs)[0])
    with pytest.raises(ConfigError, match="sentence_encoder='gru': expected one of lstm, words"):
        task.build_model(preset_for([1, 8], sentence_encoder="gru"), split.info())
    with pytest.raises(ConfigError, match="model.sentence_words is read by the words encoder only"):
        task.build_model(preset_for([1, 8], sentence_words=5), split.info())
    with pytest.raises(ConfigError, match="model.sentence_words=65: expected a whole number from 1 to 64"):
        task.build_model(preset_for([1, 8], sentence_encoder="words", sentence_words=65), split.info())
    with pytest.raises(ValueError, match="one of"):
        TextRN(num_words=12, num_answers=3, max_story=20, sentence_encoder="bag")


def test_statements_longer_than_the_word_slots_are_counted_in_a_warning(tiny_babi, capsys):
    task = get_task("babi")
    task.load(tiny_babi, "train", preset_for([1, 8], sentence_encoder="words"))
    assert "sentence_words" not in capsys.readouterr().err  # every statement fits the default slots
    split = task.load(tiny_babi, "train", preset_for([1, 8], sentence_encoder="words", sentence_words=3))
    longer = int((split.tensors["sentence_lengths"] > 3).sum())
    assert longer > 0
    assert (f"{longer} statements are longer than model.sentence_words=3 words; the words encoder does not see "
            f"the words after the first 3") in capsys.readouterr().err


@pytest.mark.parametrize("encoder", SENTENCE_ENCODERS)
def test_padded_statements_change_nothing(encoder):
    torch.manual_seed(0)
    model = TextRN(num_words=12, num_answers=3, max_story=20, g_widths=[8, 8], f_widths=[8],
                   sentence_encoder=encoder).eval()
    story = torch.randint(1, 12, (1, 2, 4))
    padded = torch.cat([story, torch.randint(1, 12, (1, 3, 4))], dim=1)
    lengths = torch.full((1, 2), 4)
    question, question_length = torch.tensor([[1, 2, 3]]), torch.tensor([3])
    short = model(story, lengths, torch.ones(1, 2, dtype=torch.bool), question, question_length)
    long = model(padded, torch.full((1, 5), 4), torch.tensor([[True, True, False, False, False]]), question,
                 question_length)
    torch.testing.assert_close(short, long)


def test_word_permutation_permutes_each_class_alike_in_story_question_and_answer():
    """Class words map to words of their class, one bijection per example shared by story and
    question; other words stay; the restored logits of an answer word are the permuted example's
    logits of its replacement's answer; every permutation of a class is drawn; eval is the identity."""
    names, colours = [3, 4, 5], [6, 7]  # colours are answers 1 and 0; names never answer
    permutation = WordPermutation([names, colours], [None, [1, 0]]).train()
    torch.manual_seed(0)
    story = torch.tensor([3, 4, 5, 6, 7, 2, 0]).repeat(400, 1).view(400, 1, 7)
    question = torch.tensor([[5, 2, 6]]).repeat(400, 1)
    new_story, new_question, restore = permutation(story, question, num_words=9, num_answers=3)
    flat = new_story[:, 0]
    assert flat[:, 5:].eq(torch.tensor([2, 0])).all()  # not in a class: unchanged
    assert all(sorted(row[:3].tolist()) == names and sorted(row[3:5].tolist()) == colours for row in flat)
    torch.testing.assert_close(new_question, torch.stack([flat[:, 2], question[:, 1], flat[:, 3]], 1))
    assert len({tuple(row[:3].tolist()) for row in flat}) == 6  # all 3! orders of the names occur
    logits = torch.arange(3.0).repeat(400, 1)  # the logit of answer a is a
    restored = restore(logits)
    assert restored[:, 2].eq(2).all()  # answer 2 is no class's: unchanged
    answer = {6: 1, 7: 0}
    assert all(restored[b, answer[6]] == answer[int(flat[b, 3])] for b in range(400))  # 6 became flat[b, 3]
    permutation.eval()
    same_story, same_question, identity = permutation(story, question, num_words=9, num_answers=3)
    assert same_story is story and same_question is question and identity(logits) is logits


def test_permute_words_trains_and_leaves_the_weights_and_eval_as_without(tiny_babi):
    """model.permute_words is checked against the vocabulary; the permutation holds no weights, so
    checkpoints and shipped models are the same files with it or without, and eval is unchanged."""
    task = get_task("babi")
    split = task.load(tiny_babi, "train", preset_for([1, 8]))
    info = split.info()
    torch.manual_seed(0)
    plain = task.build_model(preset_for([1, 8]), info)
    torch.manual_seed(0)
    permuted = task.build_model(preset_for([1, 8], permute_words=[["mary", "john", "sandra"],
                                                                   ["bathroom", "hallway", "office"]]), info)
    assert plain.state_dict().keys() == permuted.state_dict().keys()
    permuted.load_state_dict(plain.state_dict())
    inputs, targets = split.batch(torch.arange(len(split)))
    torch.testing.assert_close(plain.eval()(**inputs), permuted.eval()(**inputs))
    loss = task.loss(permuted.train()(**inputs), targets)
    loss.backward()
    assert torch.isfinite(loss) and permuted.rn.f[-1].weight.grad.abs().sum() > 0
    for classes, message in [([["mary", "zorro"]], "'zorro' is not a word"),
                             ([["mary", "bathroom"]], "mixes answers"),
                             ([["mary"]], "two or more words")]:
        with pytest.raises(ConfigError, match=message):
            task.build_model(preset_for([1, 8], permute_words=classes), info)


def test_metrics_count_passed_tasks_and_mean_error(tiny_babi):
    task = get_task("babi")
    split = task.load(tiny_babi, "train", preset_for([1, 8]))
    answers = split.tensors["answers"]
    predictions = answers.clone()
    predictions[0] = (predictions[0] + 1) % 4  # one of task 1's three questions wrong
    metrics = task.metrics(split, predictions)
    assert metrics["by_task"] == {"1": pytest.approx(2 / 3), "8": 1.0}
    assert metrics["tasks_passed"] == 1 and metrics["mean_error"] == pytest.approx(1 / 6)
    table = task.format_metrics(metrics)
    assert "1 single-supporting-fact" in table and "tasks passed (> 95%): 1/2" in table


def test_cli_trains_and_evaluates_on_valid(tiny_babi, tmp_path, capsys, monkeypatch):
    import relnet.tasks
    monkeypatch.setitem(relnet.tasks.PRESETS, "babi", preset_for([1, 8]))
    run = tmp_path / "run"
    assert main(["train", "--preset", "babi", "--data", str(tiny_babi), "--out", str(run), "--epochs", "2",
                 "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "valid" and set(metrics["by_task"]) == {"1", "8"}
    assert {"tasks_passed", "mean_error"} <= set(metrics)
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tiny_babi), "--split", "valid", "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["by_task"] == metrics["by_task"]
    assert main(["eval", str(run), "--data", str(tiny_babi), "--split", "test", "--no-progress"]) == 2
    assert "no test file for bAbI task 1" in capsys.readouterr().err
    answers = tmp_path / "answers.txt"
    assert main(["predict", str(run), "--data", str(tiny_babi), "--split", "valid", "--out", str(answers),
                 "--no-progress"]) == 0
    lines = answers.read_text().splitlines()
    assert len(lines) == 4 and set(lines) <= {"bathroom", "hallway", "office", "football,apple"}


def test_data_command_counts_questions(tiny_babi, capsys):
    assert main(["data", "babi", "--data", str(tiny_babi), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"][0] == {"task": 1, "name": "single-supporting-fact", "train": 3, "valid": 3, "test": None}
    assert report["answers"] == 4
    assert main(["data", "babi"]) == 2


def test_download_unpacks_a_local_archive(tmp_path, capsys):
    archive = tmp_path / "babi.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = STORY_1.encode()
        member = tarfile.TarInfo("tasks_1-20_v1-2/en/qa1_single-supporting-fact_train.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    out = tmp_path / "downloads"
    assert main(["data", "babi", "--download", str(out), "--url", archive.as_uri(), "--no-progress"]) == 0
    assert len(read_file(task_file(out / "tasks_1-20_v1-2" / "en", 1, "train"), 1)) == 3
    assert [p.name for p in out.iterdir() if p.name != ".lock"] == ["tasks_1-20_v1-2"]  # no scratch left behind
    assert main(["data", "babi", "--download", str(out), "--url", archive.as_uri()]) == 2  # never overwrites
    assert main(["data", "babi", "--download", str(tmp_path / "x"), "--url", (tmp_path / "none").as_uri()]) == 2
    assert "cannot download" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED.is_dir(), reason="official bAbI files not present in ../shared/data/babi")
def test_official_files_parse():
    summary = {row["task"]: row for row in summarize(SHARED / "en-valid")}
    assert all(summary[task]["train"] >= 890 and summary[task]["valid"] >= 90 for task in TASK_NAMES)
    path_finding = read_file(task_file(SHARED / "en-valid", 19, "train"), 19)
    assert all("," in example.answer for example in path_finding)


@pytest.mark.skipif(not SHARED.is_dir(), reason="official bAbI files not present in ../shared/data/babi")
def test_benchmark_script_smoke(tmp_path):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "babi.py"
    result = subprocess.run([sys.executable, str(script), "--babi", str(SHARED), "--out", str(tmp_path), "--smoke"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())["en-valid-10k"]
    assert summary["borrowed_train_tasks"] == [3] and len(summary["by_task"]) == 20
    assert (tmp_path / "en-valid-10k-data" / "qa3_train.txt").resolve() == (SHARED / "en-valid" / "qa3_train.txt").resolve()


def test_path_finding_moves_are_scored_separately(tmp_path, monkeypatch):
    import relnet.tasks

    story = ("1 The office is east of the hallway.\n2 The kitchen is north of the office.\n"
             "3 How do you go from the kitchen to the hallway?\ts,w\t2 1\n"
             "4 How do you go from the hallway to the kitchen?\te,n\t1 2\n")
    data = write_tasks(tmp_path / "data", "train", {19: story})
    write_tasks(data, "valid", {19: story})
    monkeypatch.setitem(relnet.tasks.PRESETS, "babi", preset_for([19]))
    assert main(["train", "--preset", "babi", "--data", str(data), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--no-progress", "--precision", "fp32"]) == 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from babi_path_finding import move_accuracy

    scores = move_accuracy(tmp_path / "run", data)
    assert scores["questions"] == 2
    assert all(0 <= scores[key] <= 1 for key in ("first_move", "second_move", "both"))
    assert scores["both"] <= min(scores["first_move"], scores["second_move"])


@pytest.mark.skipif(not SHARED.is_dir(), reason="official bAbI files not present in ../shared/data/babi")
def test_every_probe_builds_on_its_task():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from babi_probes import PROBES

    task = get_task("babi")
    infos = {}
    for probe, (number, changes) in PROBES.items():
        preset = get_preset("babi").with_overrides([f"data.tasks=[{number}]", *changes])
        if number not in infos:
            infos[number] = task.load(SHARED / "en-valid", "train", preset).info()
        assert isinstance(task.build_model(preset, infos[number]), TextRN), probe


def test_a_run_started_from_the_shipped_model_encodes_its_data_with_the_models_vocabulary(small_datasets, tmp_path):
    from relnet import pretrained
    from relnet.train.checkpoint import load_checkpoint

    data, shipped = small_datasets["babi"], pretrained.card("babi")["info"]
    common = ["train", "--preset", "babi", "--data", str(data), "--epochs", "1", "--no-progress", "--precision", "fp32"]
    assert main(common + ["--out", str(tmp_path / "fresh"), "--set", "model.sentence_dim=8"]) == 0
    assert load_checkpoint(tmp_path / "fresh" / "checkpoint.pt")["info"] != shipped  # the small files' own words
    assert main(common + ["--out", str(tmp_path / "tuned"), "--init-from", "pretrained:babi"]) == 0
    assert load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")["info"] == shipped


def test_a_run_started_from_a_model_refuses_answers_and_story_windows_the_model_lacks(tiny_babi, tmp_path):
    from relnet.pretrained import starting_weights
    from relnet.train import train

    task = get_task("babi")
    train(task, preset_for([1, 8]), tiny_babi, tmp_path / "source", epochs=1, progress=False)
    init = starting_weights(str(tmp_path / "source"))
    other = write_tasks(tmp_path / "other", "train", {1: STORY_1.replace("office", "attic"), 8: STORY_8})
    write_tasks(other, "valid", {1: STORY_1, 8: STORY_8})
    with pytest.raises(DataError, match=r"1 training answers are not among the model's \d+ answers"):
        train(task, preset_for([1, 8]), other, tmp_path / "tuned", epochs=1, progress=False, init=init)
    window = type(preset_for([1, 8]))(**{**preset_for([1, 8]).to_dict(), "data": {"tasks": [1, 8], "max_story": 10}})
    with pytest.raises(ConfigError, match="data.max_story=10, but the model reads 20 statements"):
        train(task, window, tiny_babi, tmp_path / "window", epochs=1, progress=False, init=init)
    train(task, preset_for([1]), tiny_babi, tmp_path / "one-task", epochs=1, progress=False, init=init)
    assert json.loads((tmp_path / "one-task" / "config.json").read_text())["info"]["tasks"] == [1]
