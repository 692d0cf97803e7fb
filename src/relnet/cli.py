"""The `relnet` command line: make data, train a preset, evaluate a run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from relnet import __version__
from relnet.errors import ConfigError, RelnetError, shown


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {shown(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {shown(text)}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {shown(text)}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {shown(text)}")
    return value


def minutes(text: str) -> float:
    """A time budget in minutes: finite, from 1e-9 (a test's "stop at once") to a thousand years."""
    value = positive_float(text)
    if not 1e-9 <= value <= 5e8:
        raise argparse.ArgumentTypeError(f"expected minutes from 1e-9 to 5e8, got {shown(text)}")
    return value


def seconds(text: str) -> float:
    """A wait in seconds: from 1 to a day."""
    value = positive_float(text)
    if not 1 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"expected seconds from 1 to 86400, got {shown(text)}")
    return value


def bounded_int(low: int, high: int):
    """An argparse type: a whole number from ``low`` to ``high`` (memory and time stay bounded)."""
    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low:,} to {high:,}, got {shown(text)}")
        return int(text)

    return parse


def non_negative_int(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {shown(text)}")
    return int(text)


def port_number(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got {shown(text)}")
    return int(text)


def writable_file(path, what: str, option: str = "--out") -> None:
    """Refuse an output file that names a directory, a device, a FIFO or nothing (only regular
    files are replaced), or a place nothing can be written; checked before any work is done."""
    if not str(path) or (Path(path).exists() and not Path(path).is_file()):
        raise ConfigError(f"{option} {shown(str(path))}: expected a file name for {what} (not a directory or "
                          f"special file)")
    writable_place(path, option)


def writable_place(path, option: str) -> None:
    """Refuse an output path whose nearest existing folder is a file or not writable, before any
    work is done (else the command would compute everything, then fail to write it)."""
    nearest = next(parent for parent in Path(path).absolute().parents if parent.exists())
    if not nearest.is_dir():
        raise ConfigError(f"{option} {shown(str(path))}: {nearest} is a file, not a directory; nothing can be "
                          f"written below it")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {shown(str(path))}: {nearest} is not writable")


def output_directory(path: str, command: str, option: str = "--out"):
    """Hold ``path`` as the output directory of ``command``: refused when it names a file, cannot
    be made, or another relnet process is writing there."""
    from relnet.io import directory_lock

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out}: a file of that name exists; expected a directory")
    writable_place(out, option)
    return directory_lock(out, command)


def cmd_data_sort_of_clevr(args) -> int:
    from relnet.tasks.sort_of_clevr.data import write_dataset

    out = Path(args.out)
    existing = [out / name for name in ("train.npz", "test.npz") if (out / name).exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it or choose another --out")
    with output_directory(args.out, "relnet data sort-of-clevr"):
        paths = write_dataset(out, train_images=args.train_images, test_images=args.test_images, seed=args.seed,
                              progress=not args.no_progress)
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_data_babi(args) -> int:
    from relnet.tasks.babi import summarize
    from relnet.tasks.babi.data import build_vocabularies, read_file, task_file

    if args.download:
        from relnet.tasks.babi.download import OFFICIAL_URL, download

        # One download into a directory at once.
        with output_directory(args.download, "relnet data babi --download", "--download"):
            root = download(Path(args.download), url=args.url or OFFICIAL_URL, progress=not args.no_progress)
        print(f"wrote {root}; train with e.g. --data {root / 'en-valid-10k'}")
        return 0
    if not args.data:
        raise ConfigError("pass --data DIR to check a bAbI directory, or --download DIR to fetch the official archive")
    data = Path(args.data)
    rows = summarize(data)
    present = [row["task"] for row in rows if row["train"] is not None]
    examples = [example for task in present for example in read_file(task_file(data, task, "train"), task)]
    vocabularies = build_vocabularies(examples) if examples else {"words": [], "answers": []}
    if args.json:
        print(json.dumps({"tasks": rows, "words": len(vocabularies["words"]), "answers": len(vocabularies["answers"])},
                         indent=2))
        return 0
    print(f"{'task':<30}{'train':>8}{'valid':>8}{'test':>8}")
    for row in rows:
        cells = "".join(f"{'-' if row[split] is None else row[split]:>8}" for split in ("train", "valid", "test"))
        print(f"{row['task']:>2} {row['name']:<27}{cells}")
    print(f"vocabulary of the train files: {len(vocabularies['words'])} words (with <pad>, <unk>), "
          f"{len(vocabularies['answers'])} answers")
    missing = [row["task"] for row in rows if row["train"] is None]
    if missing:
        print(f"warning: no train file for tasks {missing}", file=sys.stderr)
    return 0


def cmd_data_physics(args) -> int:
    from relnet.tasks.physics.data import SPLITS, write_dataset

    out = Path(args.out)
    existing = [out / f"{split}.npz" for split in SPLITS if (out / f"{split}.npz").exists()]
    if existing and not args.overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it or choose another --out")
    with output_directory(args.out, "relnet data physics"):
        paths = write_dataset(out, train_scenes=args.scenes, test_scenes=args.test_scenes, seed=args.seed,
                              progress=not args.no_progress)
    for path in paths:
        print(f"wrote {path}")
    return 0


def cmd_data_clevr_gen(args) -> int:
    from dataclasses import replace

    from relnet.tasks.clevr.data import MAX_OBJECTS
    from relnet.tasks.clevr.files import MAX_IMAGE_INDEX
    from relnet.tasks.clevr.generate import GeneratorOptions, generate, generate_questions
    from relnet.tasks.clevr.scene import SCENE_PRESETS

    preset = SCENE_PRESETS[args.preset]
    least = preset.min_objects if args.min_objects is None else args.min_objects
    most = preset.max_objects if args.max_objects is None else args.max_objects
    if not 1 <= least <= most <= MAX_OBJECTS:
        given = [f"--{name} {value}" + ("" if flag is not None else f" (of --preset {args.preset})")
                 for name, value, flag in (("min-objects", least, args.min_objects), ("max-objects", most, args.max_objects))]
        raise ConfigError(f"expected 1 <= --min-objects <= --max-objects <= {MAX_OBJECTS} (CLEVR's most), got "
                          f"{' and '.join(given)}")
    if args.start_index + args.images > MAX_IMAGE_INDEX:
        raise ConfigError(f"--start-index {args.start_index} + --images {args.images} passes the largest image index "
                          f"relnet reads ({MAX_IMAGE_INDEX - 1:,})")
    options = GeneratorOptions(images=args.images, questions_per_image=args.questions_per_image, split=args.split,
                               seed=args.seed, start_index=args.start_index,
                               scene=replace(preset, min_objects=least, max_objects=most))
    sources = dict(templates_dir=args.templates, synonyms_path=args.synonyms, metadata_path=args.metadata)
    with output_directory(args.out, "relnet data clevr-gen"):
        if args.scenes:
            result = generate_questions(Path(args.scenes), Path(args.out), options, overwrite=args.overwrite,
                                        progress=not args.no_progress, **sources)
        else:
            result = generate(Path(args.out), options, workers=args.workers, overwrite=args.overwrite,
                              progress=not args.no_progress, images=not args.no_images, **sources)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for key in ("images", "scenes", "questions"):
        if key in result:
            print(f"wrote {result[key]}")
    print(f"{'category':<20}{'questions':>10}{'answers':>9}  most frequent answer")
    for category, row in result["summary"].items():
        share = "-" if row["majority_share"] is None else f"{row['majority_answer']} ({100 * row['majority_share']:.1f}%)"
        print(f"{category:<20}{row['questions']:>10}{row['answers']:>9}  {share}")
    return 0


def cmd_data_clevr_verify(args) -> int:
    from relnet.tasks.clevr.verify import verify

    report = verify(Path(args.clevr_dir), args.split)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['split']}: {report['matched']} of {report['questions']} questions reproduce their answer "
              f"({100 * (report['accuracy'] or 0):.2f}%)")
        for failure in report["failures_shown"]:
            print(f"  question {failure['question_index']}: {failure['question']!r} stored {failure['answer']!r}, "
                  f"program gives {failure['executed']!r}")
    return 0 if report["failures"] == 0 else 1


def cmd_data_clevr_stats(args) -> int:
    from relnet.io import write_json
    from relnet.tasks.clevr.stats import compare_table, format_statistics, scene_statistics

    for option in ("json", "compare"):
        if getattr(args, option) == "":  # an unset shell variable: never "the current directory"
            raise ConfigError(f"--{option} is empty; give a path")
    if args.json is not None:
        writable_file(args.json, "the statistics", "--json")
    if args.compare_split is not None and args.compare is None:
        raise ConfigError("--compare-split needs --compare DIR2")
    stats = scene_statistics(Path(args.clevr_dir), args.split)
    other = None
    if args.compare is not None:
        other = scene_statistics(Path(args.compare), args.compare_split or args.split,
                                 option="--compare-split" if args.compare_split else "--split")
    if args.json:
        write_json(args.json, stats if other is None else {"compared": [stats, other]})
    if other is None:
        print(format_statistics(stats))
    else:
        names = [args.clevr_dir, args.compare]
        if names[0] == names[1]:
            names = [f"{names[0]} ({stats['split']})", f"{names[1]} ({other['split']})"]
        print(compare_table(stats, other, names))
    if args.json:
        print(f"wrote {args.json}")
    return 0


def cmd_data_clevr(args) -> int:
    from relnet.tasks.clevr.data import prepare

    writable_place(args.out, "--out")
    for path in prepare(Path(args.clevr_dir), Path(args.out), splits=args.splits, size=args.image_size,
                        workers=args.workers, progress=not args.no_progress, images=not args.no_images):
        print(f"wrote {path}")
    return 0


def _check_resumed_preset(checkpoint: Path, registered, given, set_keys: list[str]) -> None:
    """A resumed run keeps the preset it was started with: --set and --config may repeat it (so a
    script can rerun its command with --resume) but not change it, except in the fields that shape
    only its evaluations. Only the fields they set are compared with the run's: those named by
    --set and those where ``given`` differs from the ``registered`` preset."""
    from relnet.train.checkpoint import load_checkpoint
    from relnet.preset import EVALUATION_FIELDS, Preset

    def flat(fields: dict, prefix: str = "") -> dict:
        return {key: value for name, item in fields.items()
                for key, value in (flat(item, f"{prefix}{name}.").items() if isinstance(item, dict)
                                   else [(prefix + name, item)])}

    run = Preset.from_dict(load_checkpoint(checkpoint)["preset"], str(checkpoint))
    if run.name != given.name:
        return  # the trainer refuses another preset's checkpoint, by name
    stored, settings, default = flat(run.to_dict()), flat(given.to_dict()), flat(registered.to_dict())
    named = sorted({name for name in settings.keys() | default.keys() if settings.get(name) != default.get(name)}
                   | {key for key in set_keys if key in settings})
    changed = [name for name in named if stored.get(name) != settings.get(name) and name not in EVALUATION_FIELDS]
    if changed:
        raise ConfigError(f"{checkpoint}: a resumed run keeps the preset it was started with, and --set/--config "
                          f"would change " + ", ".join(f"{name} (run: {shown(stored.get(name))}, given: "
                                                       f"{shown(settings.get(name))})" for name in changed[:4])
                          + ("" if len(changed) <= 4 else f" and {len(changed) - 4} more")
                          + "; resume without them, or train a new run into another --out")


def cmd_train(args) -> int:
    from relnet.io import read_config_file
    from relnet.tasks import get_preset, get_task
    from relnet.train import train
    from relnet.train.memory import keep_freed_memory

    keep_freed_memory()
    writable_place(args.out, "--out")
    registered = preset = get_preset(args.preset)
    if args.config:
        preset = preset.with_settings(read_config_file(args.config, "--config file"), f"--config {args.config}")
    preset = preset.with_overrides(args.set or [])
    if (args.set or args.config) and args.resume and (Path(args.out) / "checkpoint.pt").exists():
        # (Without a checkpoint yet, --resume starts the run afresh, --set included.)
        _check_resumed_preset(Path(args.out) / "checkpoint.pt", registered, preset,
                              [assignment.partition("=")[0] for assignment in args.set or []])
    task = get_task(preset.task)
    init = None
    if args.init_from:
        init = _starting_weights(args.init_from, Path(args.out) / "checkpoint.pt" if args.resume else None)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    metrics = train(task, preset, Path(args.data), Path(args.out), epochs=args.epochs, max_minutes=args.max_minutes,
                    seed=args.seed, device=args.device, precision=args.precision, resume=args.resume,
                    progress=not args.no_progress, checkpoint_minutes=args.checkpoint_minutes,
                    accumulate=args.accumulate, compile=args.compile, eval_every=args.eval_every,
                    eval_subset=args.eval_subset, command="relnet " + shlex.join(args.argv),
                    slice_minutes=args.slice_minutes, dist_timeout=args.dist_timeout, init=init)
    from relnet.train.distributed import world_from_environment

    if not world_from_environment().is_main:  # under torchrun, rank 0 reports
        return 0
    print(task.format_metrics(metrics))
    print(f"trained {metrics['steps']} steps in {metrics['train_seconds']:.0f} s "
          f"({metrics['train_samples_per_second']} samples/s); wrote {Path(args.out) / 'metrics.json'}")
    print(_why_training_ended(metrics))
    return 0


def _starting_weights(spec: str, resumed: Path | None):
    """--init-from's weights for a new run; none for a resumed one, which must have started from them."""
    from relnet.pretrained import source_name, starting_weights
    from relnet.train.checkpoint import load_checkpoint, other_starting_weights

    if resumed and resumed.exists():
        problem = other_starting_weights(load_checkpoint(resumed)["options"].get("init_from"), source_name(spec),
                                         resumed.parent)
        if problem:
            raise ConfigError(problem)
        return None
    return starting_weights(spec)


def _why_training_ended(metrics: dict) -> str:
    """Which limit ended the run (all its epochs, or the time budget), and how to go on."""
    epochs, budget = metrics["epochs_planned"], metrics["max_minutes"]
    if metrics["ended_by"] == "slice":
        return (f"this sitting's --slice-minutes ended it after {metrics['epochs']:.2f} of {epochs} epochs; "
                f"`--resume` goes on with the same schedule")
    if metrics["ended_by"] == "time budget":
        return (f"stopped by the time budget (--max-minutes {budget:g}) after {metrics['epochs']:.2f} of {epochs} "
                f"epochs; `--resume --max-minutes M` goes on")
    within = f", within the --max-minutes {budget:g} budget" if budget else ""
    return f"trained all {epochs} epoch{'s' * (epochs != 1)}{within}; --epochs N trains longer"


def _load_run(args):
    """The task, preset, checkpoint info, model and split of ``relnet eval`` / ``relnet predict``."""
    from relnet.io import checked_name
    from relnet.tasks.base import nonempty
    from relnet.pretrained import load_trained
    from relnet.train.loop import resolve_device, resolve_precision

    if args.split is not None:
        checked_name(args.split, "--split")  # it becomes part of file names
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    task, preset, info, model = load_trained(args.run, device)
    args.split = args.split or task.eval_split
    split = nonempty(task.load(Path(args.data), args.split, preset, info), args.data).to(device)
    return task, preset, info, model, split, device, precision


RUN_HELP = "run directory written by `relnet train`, pretrained:NAME, or an exported NAME.safetensors"


def cmd_eval(args) -> int:
    from relnet import pretrained
    from relnet.io import write_json
    from relnet.train.loop import predict
    from relnet.train.memory import keep_freed_memory

    keep_freed_memory()
    # A run directory gets the metrics and pictures; a shipped or exported model has no directory of its own.
    shipped = args.run.startswith(pretrained.PREFIX) or pretrained.is_path(args.run)
    out_dir = Path(args.out) if args.out else None if shipped else Path(args.run)
    if out_dir is not None and out_dir.exists() and not (out_dir.is_dir() and os.access(out_dir, os.W_OK)):
        raise ConfigError(f"{out_dir}: cannot write eval_{args.split or 'SPLIT'}.json there (not a writable "
                          f"directory); pass --out DIR")
    if out_dir is not None:
        writable_place(out_dir, "--out")
    task, preset, _, model, split, device, precision = _load_run(args)
    predictions = predict(task, model, split, preset.eval_batch_size, device, precision, progress=not args.no_progress)
    metrics = {**task.metrics(split, predictions), "preset": preset.name, "model": args.run}
    print(json.dumps(metrics, indent=2) if args.json else task.format_metrics(metrics))
    if out_dir is not None:
        out = out_dir / f"eval_{args.split}.json"
        write_json(out, metrics)
        for written in [out, *task.figures(split, predictions, out_dir)]:
            print(f"wrote {written}", file=sys.stderr)
    return 0


def _trained_commit(run: Path) -> str | None:
    """The commit RUN/config.json records (that of the run's last start or resume), if any."""
    try:
        commit = json.loads((run / "config.json").read_text())["environment"]["commit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return commit if isinstance(commit, str) and commit else None


def cmd_export(args) -> int:
    from relnet import pretrained
    from relnet.io import checked_name
    from relnet.train.checkpoint import load_checkpoint
    from relnet.train.loop import git_commit
    from relnet.preset import Preset

    name = checked_name(args.name, "--name")  # it becomes NAME.safetensors and NAME.json
    folder = Path(args.dir)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--dir {folder}: a file of that name exists; expected a directory")
    writable_place(folder, "--dir")
    if (folder / f"{name}.safetensors").exists() and not args.overwrite:
        raise ConfigError(f"{folder / (name + '.safetensors')} already exists; pass --overwrite to replace it")
    run = Path(args.run)
    state = load_checkpoint(run / "checkpoint.pt")
    Preset.from_dict(state["preset"], str(run / "checkpoint.pt"))
    # The checkpoint's weights are those of its last full evaluation when it was written at an
    # epoch's end (or at the end of training); a checkpoint written mid-epoch is refused.
    full = [entry for entry in state["history"] if not entry.get("subset")]
    if not full or full[-1]["step"] != state["progress"]["step"]:
        raise ConfigError(f"{run / 'checkpoint.pt'}: its weights have no full evaluation (written mid-epoch); "
                          f"export a run that finished, or the checkpoint written at the end of an epoch")
    last = full[-1]
    metrics = {**last["eval"], "questions_seen": last["questions_seen"], "train_seconds": round(last["train_seconds"], 1),
               "epochs": last["epoch"], "data_seed": args.data_seed}
    command = state["options"].get("command") or f"relnet train --preset {state['preset']['name']} ..."
    commit = args.commit or _trained_commit(run) or git_commit() or "unknown"
    for path in pretrained.export(state, metrics, name, folder, command, commit):
        print(f"wrote {path}")
    return 0


def cmd_predict(args) -> int:
    from relnet.io import atomic_write
    from relnet.train.loop import predict

    writable_file(args.out, "the answers")
    task, preset, info, model, split, device, precision = _load_run(args)
    names = task.answer_names(info)
    predictions = predict(task, model, split, preset.eval_batch_size, device, precision, progress=not args.no_progress)
    text = "".join(f"{names[int(p)]}\n" for p in predictions)
    atomic_write(args.out, lambda file: file.write(text.encode()))
    print(f"wrote {len(predictions)} answers to {args.out}", file=sys.stderr)
    return 0


MAX_QUESTION_CHARS = 500  # of a typed question, as on relnet serve's page (CLEVR's longest has under 300)


def cmd_explain(args) -> int:
    from relnet.io import checked_name
    from relnet.look import example_split, explain_example, object_labels
    from relnet.look.figure import draw, shown_pairs
    from relnet.pretrained import load_trained
    from relnet.train.loop import resolve_device

    if args.split is not None:
        checked_name(args.split, "--split")  # it becomes part of the picture's file name
    if args.question is not None and len(args.question) > MAX_QUESTION_CHARS:
        raise ConfigError(f"--question of {len(args.question):,} characters; at most {MAX_QUESTION_CHARS} are read")
    if args.out is not None:  # before the model loads (the default name needs its preset and split)
        writable_file(args.out, "the picture")
        if Path(args.out).suffix.lower() != ".png":
            raise ConfigError(f"--out {shown(args.out)}: the picture is a PNG; give a file name ending in .png")
    task, preset, info, model = load_trained(args.run, resolve_device(args.device))
    split = example_split(task, preset, info, Path(args.data) if args.data else None, args.split, args.seed)
    explained = explain_example(task, preset, info, model, split.to(next(model.parameters()).device), args.index,
                                args.question)
    out = Path(args.out or f"explain-{preset.name}-{split.name}-{args.index}.png")
    if args.out is None:
        writable_file(out, "the picture")
    draw(explained, out)
    view, relation = explained.view, explained.relation
    if args.json:
        print(json.dumps({"question": view.question, "truth": view.truth, "answer": relation.answer,
                          "probability": relation.probability, "top": relation.top, "meaning": relation.meaning,
                          "logit": relation.logit, "linearized": relation.linearized,
                          "objects": relation.objects.tolist(), "pairs": relation.pairs.tolist(),
                          "unknown_words": explained.unknown_words, "picture": str(out)}, indent=2))
    else:
        print(f"question: {view.question}\nanswer:   {relation.answer} (p = {relation.probability:.3f})"
              + ("" if view.truth is None else f"\ntruth:    {view.truth}"))
        if explained.unknown_words:
            print(f"unknown words (read as unknown): {', '.join(explained.unknown_words)}")
        labels = object_labels(view, len(relation.objects))
        for i, j, value in shown_pairs(relation):
            print(f"  pair {labels[i]} + {labels[j]}: {value:+.3f}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    try:
        from relnet.look.server import serve
    except ImportError as error:
        raise ConfigError(f"relnet serve needs FastAPI and uvicorn ({error}): pip install 'relnet[serve]'") from None
    from relnet.train.loop import resolve_device

    known = ("sort-of-clevr", "babi", "physics", "physics-connections", "physics-count", "clevr")
    data = {}
    for entry in args.data or []:
        task, separator, directory = entry.partition("=")
        if not separator or not directory:
            raise ConfigError(f"--data {shown(entry)}: expected TASK=DIR, e.g. babi=data/en-valid")
        if task not in known:
            raise ConfigError(f"--data {shown(entry)}: unknown benchmark {shown(task)}; expected one of "
                              f"{', '.join(known)}")
        if not Path(directory).is_dir():
            raise ConfigError(f"--data {shown(entry)}: {directory} is not a directory")
        data[task] = Path(directory)
    serve(args.host, args.port, args.run or [], data, str(resolve_device(args.device)))
    return 0


def cmd_presets(args) -> int:
    from relnet.tasks import PRESETS

    from relnet import pretrained

    for name, preset in sorted(PRESETS.items()):
        print(f"{name:<26}{preset.description}")
    print("\npretrained models (relnet eval pretrained:NAME --data DIR):")
    for name in pretrained.names():
        try:
            print(f"  pretrained:{name:<24}{_card_summary(pretrained.card(name))}")
        except (RelnetError, KeyError, TypeError, ValueError, AttributeError) as error:  # one bad card, not all
            print(f"  pretrained:{name:<24}unreadable card ({one_line(error)})")
    return 0


def _card_summary(card: dict) -> str:
    from relnet.train.status import metrics_summary

    return f"{card['preset']['name']}; {metrics_summary(card['metrics'])}"


def cmd_status(args) -> int:
    from relnet.train.status import format_status, run_status

    statuses = []
    for run in args.runs:  # one run's error is its own line, not the end of the others'
        try:
            statuses.append(run_status(run))
        except RelnetError as error:
            statuses.append({"run": run, "error": one_line(error)})
    if args.json:
        print(json.dumps(statuses, indent=2))
    else:
        for status in statuses:
            if "error" in status:
                print(f"relnet: error: {status['error']}", file=sys.stderr)
            else:
                print(format_status(status))
    return 2 if any("error" in status for status in statuses) else 0


def add_generator_options(parser: argparse.ArgumentParser, handler) -> None:
    """The options every data generator shares."""
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="random seed; the same seed gives byte-identical files (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relnet", description="Relation Networks: data, training and evaluation.")
    parser.add_argument("--version", action="version", version=f"relnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_data_parsers(commands)
    _add_train_parser(commands)
    _add_run_parsers(commands)
    _add_look_parsers(commands)
    return parser


def _add_data_parsers(commands) -> None:
    """`relnet data DATASET`: generate or prepare each benchmark's data."""
    data = commands.add_parser("data", help="generate or prepare a benchmark's data",
                               description="Generate or prepare a benchmark's data.")
    datasets = data.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    _add_generated_data_parsers(datasets)
    _add_clevr_data_parsers(datasets)


def _add_generated_data_parsers(datasets) -> None:
    """`relnet data sort-of-clevr`, `babi` and `physics`."""
    soc = datasets.add_parser("sort-of-clevr", help="generate Sort-of-CLEVR (train.npz, test.npz)",
                              description="Generate Sort-of-CLEVR into DIR/train.npz and DIR/test.npz "
                                          "(30 questions per image; see docs/sort-of-clevr.md).")
    soc.add_argument("--train-images", type=bounded_int(1, 1_000_000), default=10_000, metavar="N", help="training images (default 10000)")
    soc.add_argument("--test-images", type=bounded_int(1, 1_000_000), default=2_000, metavar="N", help="test images (default 2000)")
    add_generator_options(soc, cmd_data_sort_of_clevr)

    babi = datasets.add_parser("babi", help="check a bAbI directory, or download the official archive",
                               description="Print per-task question counts and the vocabulary size of a bAbI "
                                           "directory (en/, en-10k/, en-valid/ or en-valid-10k/ of bAbI v1.2), "
                                           "or download and unpack the official archive.")
    babi.add_argument("--data", metavar="DIR", help="bAbI directory to check")
    babi.add_argument("--download", metavar="DIR", help="download the official v1.2 archive and unpack it into DIR")
    babi.add_argument("--url", default=None, help="archive URL for --download (default: the official one)")
    babi.add_argument("--json", action="store_true", help="print the counts as JSON")
    babi.add_argument("--no-progress", action="store_true", help="no progress bar")
    babi.set_defaults(handler=cmd_data_babi)

    physics = datasets.add_parser("physics", help="simulate balls joined by springs (train.npz, test.npz)",
                                  description="Simulate 10 balls with invisible springs, 16 frames each, into "
                                              "DIR/train.npz and DIR/test.npz (see docs/physics.md).")
    physics.add_argument("--scenes", type=bounded_int(1, 5_000_000), default=100_000, metavar="N", help="training scenes (default 100000)")
    physics.add_argument("--test-scenes", type=bounded_int(1, 1_000_000), default=10_000, metavar="N", help="test scenes (default 10000)")
    add_generator_options(physics, cmd_data_physics)


def _add_clevr_data_parsers(datasets) -> None:
    """`relnet data clevr-gen`, `clevr`, `clevr-verify` and `clevr-stats`."""
    gen = datasets.add_parser(
        "clevr-gen", help="generate a CLEVR-format dataset (images, scenes, questions; --no-images: no images)",
        description="Render CLEVR-style scenes on the CPU and write questions from CLEVR-format templates, in the "
                    "official layout (images/SPLIT/CLEVR_SPLIT_NNNNNN.png, scenes/CLEVR_SPLIT_scenes.json, "
                    "questions/CLEVR_SPLIT_questions.json). With --scenes, only write questions for an existing "
                    "scene file. See docs/clevr.md.")
    gen.add_argument("--images", type=positive_int, default=1000, metavar="N", help="images to render (default 1000)")
    gen.add_argument("--questions-per-image", type=bounded_int(1, 1000), default=10, metavar="K", help="questions per image (default 10)")
    gen.add_argument("--split", default="train", help="split name: train, val, test, ... (default train)")
    gen.add_argument("--start-index", type=non_negative_int, default=0, metavar="I", help="index of the first image (default 0)")
    gen.add_argument("--preset", choices=["clevr", "small"], default="clevr",
                     help="scene options: clevr (CLEVR's: 3-10 objects) or small (3-6 objects, for the CPU-sized "
                          "clevr-small-* presets; docs/clevr.md); the flags below override it (default clevr)")
    gen.add_argument("--min-objects", type=positive_int, metavar="A", help="fewest objects per scene (default: the preset's)")
    gen.add_argument("--max-objects", type=positive_int, metavar="B", help="most objects per scene (default: the preset's)")
    gen.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="W",
                     help="rendering processes (default: one per core); the output does not depend on it")
    gen.add_argument("--templates", metavar="DIR", help="directory of CLEVR template files (default: relnet's own)")
    gen.add_argument("--synonyms", metavar="FILE", help="synonyms JSON (default: relnet's own)")
    gen.add_argument("--metadata", metavar="FILE", help="CLEVR metadata JSON to check the attribute values against")
    gen.add_argument("--scenes", metavar="FILE", help="write questions for this scene file instead of rendering")
    gen.add_argument("--no-images", action="store_true",
                     help="write scenes and questions only, no images (the same scenes; what state models need; "
                          "--scenes never renders)")
    gen.add_argument("--json", action="store_true", help="print the paths and answer statistics as JSON")
    add_generator_options(gen, cmd_data_clevr_gen)

    clevr = datasets.add_parser(
        "clevr", help="cache a CLEVR-format directory for training (images, questions, object tables)",
        description="Preprocess CLEVR v1.0 (or data from `relnet data clevr-gen`, or any subset of either) once: "
                    "images resized into one uint8 array per split (read from each scene's image_filename), "
                    "questions tokenized with the train vocabulary, answers, categories, families and per-image "
                    "object tables. Interrupted image caching resumes where it stopped.")
    clevr.add_argument("--clevr-dir", required=True, metavar="DIR", help="CLEVR_v1.0 directory (images/, questions/, scenes/)")
    clevr.add_argument("--out", required=True, metavar="CACHE", help="cache directory for `relnet train --data`")
    clevr.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits to cache (default: all with questions)")
    clevr.add_argument("--image-size", type=bounded_int(8, 1024), default=128, metavar="PX", help="image side (default 128)")
    clevr.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, metavar="W",
                       help="image-decoding processes (default: one per core)")
    clevr.add_argument("--no-images", action="store_true",
                       help="a state-only cache: questions and object tables from the scenes, no images read "
                            "(for the state presets; the folder may hold no images at all)")
    clevr.add_argument("--no-progress", action="store_true", help="no progress bar")
    clevr.set_defaults(handler=cmd_data_clevr)

    verify = datasets.add_parser(
        "clevr-verify", help="execute every question's program on its scene and compare answers",
        description="Run the functional program of every question of a CLEVR-format split on its scene and report "
                    "how many reproduce the stored answer (exit status 1 when any does not).")
    verify.add_argument("--clevr-dir", required=True, metavar="DIR", help="CLEVR-format directory (questions/, scenes/)")
    verify.add_argument("--split", default="val", help="split to check (default val)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=cmd_data_clevr_verify)

    stats = datasets.add_parser(
        "clevr-stats", help="scene and question statistics of a CLEVR-format split",
        description="Report the statistics of one split of a CLEVR-format directory (scenes/CLEVR_SPLIT_scenes.json "
                    "and/or questions/CLEVR_SPLIT_questions.json): objects per scene, attribute shares, object "
                    "heights (z) by shape and size, x/y and rotation ranges and, where questions exist, category "
                    "shares, answer distributions, families and question length. With --compare, print a Markdown "
                    "table of two directories side by side (e.g. generated data against real CLEVR).")
    stats.add_argument("--clevr-dir", required=True, metavar="DIR", help="CLEVR-format directory (scenes/, questions/)")
    stats.add_argument("--split", default="train", help="split to report (default train)")
    stats.add_argument("--json", metavar="FILE", help="also write the statistics as JSON to FILE")
    stats.add_argument("--compare", metavar="DIR2", help="a second CLEVR-format directory to set beside DIR")
    stats.add_argument("--compare-split", metavar="S", help="split of DIR2 (default: --split)")
    stats.set_defaults(handler=cmd_data_clevr_stats)


def _add_train_parser(commands) -> None:
    train = commands.add_parser("train", help="train a preset",
                                description="Train a preset; the run lives in --out. Under `torchrun "
                                            "--nproc_per_node N -m relnet.cli train ...` the batch is shared by N "
                                            "processes (gloo on CPU, NCCL on GPUs).")
    train.add_argument("--preset", required=True, metavar="NAME", help="experiment preset (see `relnet presets`)")
    train.add_argument("--data", required=True, metavar="DIR", help="data directory of the preset's benchmark")
    train.add_argument("--out", required=True, metavar="RUN", help="run directory (checkpoint, metrics, curves)")
    train.add_argument("--epochs", type=bounded_int(1, 1_000_000), metavar="N",
                       help="epochs, up to 1,000,000 (default: the preset's)")
    train.add_argument("--max-minutes", type=minutes, metavar="M",
                       help="the run's training time budget, over all its sittings; the learning-rate schedule "
                            "completes within it")
    train.add_argument("--slice-minutes", type=minutes, metavar="M",
                       help="end this sitting after M minutes (wall time) with an evaluation and a checkpoint; "
                            "the run's horizon and schedule stay as they are; --resume goes on (docs/long-runs.md)")
    train.add_argument("--seed", type=bounded_int(0, 2 ** 32 - 1), default=0, help="random seed (default 0)")
    train.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    train.add_argument("--precision", default="auto",
                       help="fp32, bf16 (autocast) or auto (default: bf16 on CUDA and on CPUs with native bf16 "
                            "matrix instructions, AVX-512 BF16 or AMX; fp32 elsewhere)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint (with the preset it was "
                       "started with: the command's --set/--config may be repeated, not changed, but for eval_batch_size)")
    train.add_argument("--init-from", metavar="MODEL",
                       help="start from a trained model's weights instead of the seed's: pretrained:NAME, an exported "
                            "NAME.safetensors or a run directory, of the preset's task and model shape (fine-tuning, "
                            "or a finished run trained on with a new schedule); the data is encoded with its "
                            "vocabularies; recorded in config.json and the exported card")
    train.add_argument("--checkpoint-minutes", type=positive_float, default=5.0, metavar="M",
                       help="also checkpoint every M minutes within an epoch (default 5)")
    train.add_argument("--accumulate", type=positive_int, default=1, metavar="K",
                       help="split each batch into K micro-batches whose gradients add up (same curve, less memory)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model (pays on long GPU runs)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a preset field (lr=1e-4, schedule=constant) or model/data entry "
                            "(model.g_widths=[256,256,256,256], data.questions_per_image=8); repeatable")
    train.add_argument("--config", metavar="FILE", help="preset changes from a JSON or TOML file: an object of fields "
                                                        "whose model and data objects change those entries "
                                                        "(lr = 3e-4, [model] g_widths = [64, 64]); --set applies after")
    train.add_argument("--eval-every", type=bounded_int(1, 10 ** 12), metavar="N",
                       help="also evaluate every N training examples seen, on a fixed subset of the evaluation split")
    train.add_argument("--eval-subset", type=bounded_int(1, 10 ** 9), metavar="K",
                       help="size of that subset (default 4000; a resumed run keeps its own, so that its curve "
                            "stays comparable)")
    train.add_argument("--threads", type=bounded_int(1, 1024), metavar="N",
                       help="CPU threads PyTorch may use (default: its own choice, one per core; recorded in "
                            "config.json)")
    train.add_argument("--dist-timeout", type=seconds, default=300.0, metavar="S",
                       help="under torchrun (RANK and WORLD_SIZE set): give up when the processes have not all met "
                            "at MASTER_ADDR:MASTER_PORT within S seconds, from 1 to 86400 (default 300); a line "
                            "every 5 s says what is awaited, Ctrl-C stops the wait")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    train.set_defaults(handler=cmd_train)


def _add_run_parsers(commands) -> None:
    """The commands that read a run: `relnet status`, `eval`, `predict` and `export`."""
    status = commands.add_parser("status", help="where runs stand: training, stopped or finished, horizon, last "
                                                 "evaluations, the command that resumes them",
                                 description="Where each RUN stands, read from its directory (nothing is written): "
                                             "whether a process trains it now, how far it is through its horizon and "
                                             "the training time left at its pace, its last evaluations and, when "
                                             "stopped, the command that resumes it (docs/long-runs.md).")
    status.add_argument("runs", nargs="+", metavar="RUN", help="run directories written by `relnet train`")
    status.add_argument("--json", action="store_true", help="print the states as JSON")
    status.set_defaults(handler=cmd_status)

    evaluate = commands.add_parser("eval", help="evaluate a trained run",
                                   description="Evaluate the checkpoint of RUN on a split; writes RUN/eval_SPLIT.json.")
    evaluate.add_argument("run", metavar="RUN", help=RUN_HELP + " (see `relnet presets`)")
    evaluate.add_argument("--out", metavar="DIR", help="write eval_SPLIT.json and pictures here (default: RUN; "
                                                      "nowhere for a pretrained or exported model)")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="data directory")
    evaluate.add_argument("--split", help="split to evaluate (default: the one training evaluates: test; valid for bAbI, "
                                          "val for CLEVR)")
    evaluate.add_argument("--device", default="auto", help="cpu, cuda or auto")
    evaluate.add_argument("--precision", default="auto", help="fp32, bf16 or auto")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.set_defaults(handler=cmd_eval)

    predict = commands.add_parser("predict", help="write a run's answers for a split, one per line",
                                  description="Answer every question of a split (e.g. CLEVR's test split, which has "
                                              "no public answers) and write one answer per line, in question order.")
    predict.add_argument("run", metavar="RUN", help=RUN_HELP)
    predict.add_argument("--data", required=True, metavar="DIR", help="data directory")
    predict.add_argument("--split", default="test", help="split to answer (default test)")
    predict.add_argument("--out", required=True, metavar="FILE", help="answers file to write")
    predict.add_argument("--device", default="auto", help="cpu, cuda or auto")
    predict.add_argument("--precision", default="auto", help="fp32, bf16 or auto")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(handler=cmd_predict)

    export = commands.add_parser("export", help="write a run's weights and card as a shippable pretrained model",
                                 description="Write NAME.safetensors (weights only) and NAME.json (preset, command, "
                                             "data seed, commit, metrics) from a finished run into --dir; "
                                             "`relnet eval DIR/NAME.safetensors` and pretrained.load(PATH) load "
                                             "them. To ship a model in relnet itself, --dir src/relnet/pretrained.")
    export.add_argument("run", metavar="RUN", help="run directory written by `relnet train`")
    export.add_argument("--name", required=True, help="model name: the files are NAME.safetensors and NAME.json")
    export.add_argument("--dir", metavar="DIR", default=".", help="folder to write into (default: the current "
                                                                  "directory)")
    export.add_argument("--data-seed", type=non_negative_int, default=0, help="seed of the data the run trained on (default 0)")
    export.add_argument("--commit", help="commit the run was trained with (default: the one its config.json "
                                         "records, else the checkout's HEAD)")
    export.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    export.set_defaults(handler=cmd_export)


def _add_look_parsers(commands) -> None:
    """`relnet explain`, `serve` and `presets`."""
    explain = commands.add_parser(
        "explain", help="draw one example with the pairs of objects that carried the answer",
        description="Answer one example and draw it: the scene (image, story or trajectories) with each object "
                    "shaded by its share of the answer and arcs for the strongest pairs, beside the most probable "
                    "answers (method: docs/explain.md). Without --data, benchmarks with a generator "
                    "(Sort-of-CLEVR, CLEVR, physics) explain freshly generated examples.")
    explain.add_argument("run", metavar="RUN", help=RUN_HELP)
    explain.add_argument("--data", metavar="DIR", help="data directory (default: freshly generated examples)")
    explain.add_argument("--split", help="split of --data (default: the one training evaluates)")
    explain.add_argument("--index", type=int, default=0, metavar="K", help="example to explain (default 0)")
    explain.add_argument("--question", metavar="TEXT", help="ask this question about the example instead of its own")
    explain.add_argument("--seed", type=non_negative_int, default=0, help="seed of the generated examples (default 0)")
    explain.add_argument("--out", metavar="FILE.png",
                         help="picture to write (default explain-PRESET-SPLIT-K.png in the current directory)")
    explain.add_argument("--device", default="auto", help="cpu, cuda or auto")
    explain.add_argument("--json", action="store_true", help="print the answer and the attribution as JSON")
    explain.set_defaults(handler=cmd_explain)

    serve = commands.add_parser(
        "serve", help="a local web page to ask trained RNs questions and see their relation maps",
        description="Serve a page where you pick a model (every shipped pretrained one, plus --run), browse test "
                    "examples or make a new random scene (Sort-of-CLEVR, CLEVR, physics), pick or type a question "
                    "and see the answer, the top-5 answers and the relation map. Needs relnet[serve].")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=port_number, default=8000, help="port (default 8000)")
    serve.add_argument("--run", action="append", metavar="RUN", help="also offer this run directory; repeatable")
    serve.add_argument("--data", action="append", metavar="TASK=DIR",
                       help="test examples of a benchmark (sort-of-clevr, babi, physics, clevr); repeatable. "
                            "Without it, benchmarks with a generator show generated examples; bAbI needs it")
    serve.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    serve.set_defaults(handler=cmd_serve)

    presets = commands.add_parser("presets", help="list the experiment presets and pretrained models",
                                  description="List the experiment presets and the pretrained models that ship.")
    presets.set_defaults(handler=cmd_presets)


def one_line(error: Exception) -> str:
    """An error message on one line (some libraries' messages span several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


@contextlib.contextmanager
def interrupts_held():
    """Hold a Ctrl-C until the block ends, then raise it. Raised inside an import it can be
    swallowed (torch's C++ set-up of numpy clears errors), leaving numpy half-imported and the
    command running on. A Ctrl-C that is ignored or handled elsewhere, or a thread that cannot set
    signals, is left as it is."""
    held = []
    hold = signal.getsignal(signal.SIGINT) is signal.default_int_handler and \
        threading.current_thread() is threading.main_thread()
    if hold:
        signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        if hold:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    try:  # from the first line: a Ctrl-C at any moment of start-up is one line and status 130
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser().parse_args(argv)
        args.argv = argv  # the command as typed, recorded in a run's config (and a pretrained model's card)
        with interrupts_held():  # the libraries every command but --help and --version loads
            import numpy  # noqa: F401
            import torch  # noqa: F401
        for option in ("out", "data", "dir", "download", "clevr_dir", "run", "templates", "synonyms", "metadata",
                       "scenes"):
            if getattr(args, option, None) == "":  # an unset shell variable: never "the current directory"
                raise ConfigError(f"--{option.replace('_', '-')} is empty; give a path")
        return args.handler(args)
    except RelnetError as error:
        print(f"relnet: error: {one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system refused (permissions, a full disk, a name that is a directory)
        print(f"relnet: error: {one_line(error)}", file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as error:  # torch reports an allocation it could not make as a RuntimeError
        from relnet.train.memory import is_out_of_memory

        if not is_out_of_memory(error):
            raise
        print("relnet: error: out of memory; ask for less (fewer images or scenes, a smaller batch or model)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print(f"relnet: interrupted{': ' + str(interrupt) if str(interrupt) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
