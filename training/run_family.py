"""Train every method x seed of a model family, then publish the comparison.

Each run is ``zoo train <recipe> --seed S --output runs/<family>/<recipe>/seed<S>`` in its own
process (one torch thread each, ``--jobs`` at a time), logging to ``<run>.log``. A run whose
export exists is skipped; an interrupted one resumes from its last checkpoint. Then the runs
are published with :func:`zoo.train.compare.publish_family` into ``model_cards/``, which records
every variant in ``model_cards/index.json`` (the plain name an alias of the best one), and the
comparison goes to ``benchmarks/results/<family>.json`` / ``.md``.

    python training/run_family.py egnn-nbody --methods standard cr ace recm --seeds 0 1 2
    python training/run_family.py vn-pointnet-modelnet40 --methods standard cr ace --seeds 0
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.train.compare import publish_family  # noqa: E402


def run_one(recipe: str, seed: int, run: Path, extra: list[str]) -> tuple[str, float, int]:
    """Train one recipe/seed in a subprocess (resuming if a checkpoint exists)."""
    if (run / "export" / "config.json").exists():
        return str(run), 0.0, 0
    cmd = [sys.executable, "-m", "zoo.cli", "train", recipe, "--seed", str(seed),
           "--output", str(run), "--no-progress", *extra]
    if (run / "checkpoints" / "last.ckpt").exists():
        cmd.append("--resume")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(run.with_suffix(".log"), "a") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return str(run), time.time() - started, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("family", help="plain model name, e.g. egnn-nbody")
    parser.add_argument("--methods", nargs="+", default=["standard", "cr", "ace", "recm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--output", type=Path, default=ROOT / "model_cards")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--set", action="append", default=[],
                        help="recipe override for every run (passed to zoo train --set)")
    parser.add_argument("--publish-only", action="store_true")
    args = parser.parse_args()

    jobs = [(f"{args.family}.{m}", s, args.runs / args.family / f"{args.family}.{m}" / f"seed{s}")
            for m in args.methods for s in args.seeds]
    extra = [a for kv in args.set for a in ("--set", kv)]
    if not args.publish_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            for run, wall, code in pool.map(lambda j: run_one(*j, extra), jobs):
                print(f"{run}: exit {code}, {wall / 60:.1f} min", flush=True)
    done = [run for _, _, run in jobs if (run / "export" / "config.json").exists()]
    if len(done) < len(jobs):
        print(f"{len(jobs) - len(done)} run(s) unfinished; publishing needs all of them")
        return 1
    command = (f"python training/run_family.py {args.family} --methods {' '.join(args.methods)} "
               f"--seeds {' '.join(map(str, args.seeds))}"
               + "".join(f" --set {kv}" for kv in args.set))
    results = args.results / f"{args.family}.json"
    summary = publish_family(args.family, done, args.output, command)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"command": command, **summary}, indent=2) + "\n")
    results.with_suffix(".md").write_text(
        f"# {args.family}: standard vs relaxed training\n\n{summary['table']}\n\n"
        f"Reproduce: `{command}`\n"
    )
    print(summary["table"])
    print(f"recorded {', '.join(summary['variants'])} in {args.output / 'index.json'} "
          f"({args.family} -> {summary['best']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
