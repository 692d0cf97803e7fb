"""Peak memory of `relnet data clevr-gen --no-images` as the split grows: the generator streams
scenes and questions to disk, so the peak should stay flat.

    python benchmarks/clevr_gen_memory.py --scenes 7000 70000 --json OUT.json
    python benchmarks/clevr_gen_memory.py --smoke            # seconds

Each size runs in its own process (one worker, so one process holds everything the run holds);
its peak resident set size comes from the kernel's accounting of that process (wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def peak_of_run(scenes: int, work: Path) -> dict:
    """Run clevr-gen for ``scenes`` scenes (no images) into ``work``; its peak RSS and seconds."""
    command = [sys.executable, "-m", "relnet.cli", "data", "clevr-gen", "--out", str(work / f"gen-{scenes}"),
               "--images", str(scenes), "--no-images", "--workers", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace")
    process.stderr.close()
    if process.returncode:
        raise SystemExit(f"clevr-gen --images {scenes} failed (exit {process.returncode}):\n{errors[-2000:]}")
    questions = work / f"gen-{scenes}" / "questions" / "CLEVR_train_questions.json"
    return {"scenes": scenes, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
            "seconds": round(time.perf_counter() - start, 1), "questions_file_mb": round(questions.stat().st_size / 2**20, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, nargs="+", default=[7000, 70000], help="split sizes (default 7000 70000)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, seconds; no claims")
    args = parser.parse_args(argv)
    sizes = [5, 20] if args.smoke else args.scenes
    with tempfile.TemporaryDirectory() as work:
        results = [peak_of_run(scenes, Path(work)) for scenes in sizes]
    print("| scenes | peak RSS | questions file | seconds |\n|---|---|---|---|")
    for row in results:
        print(f"| {row['scenes']:,} | {row['peak_rss_mb']:,.0f} MB | {row['questions_file_mb']:,.1f} MB | {row['seconds']:,.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
