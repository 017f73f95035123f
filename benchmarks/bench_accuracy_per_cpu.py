"""Accuracy per CPU-second on rMD17 aspirin: the zoo's chosen recipe against MACE, side by side.

Both train on the same 950 / 50 train / validation frames (the zoo's split,
``zoo.data.load_rmd17(molecule, split, n_train=950, n_val=50, seed=0)``, written to extended XYZ
for MACE), one after the other, each as a subprocess with the same torch thread count and the
same budget of CPU seconds. CPU seconds are the training process tree's own CPU time (user +
system, every thread, children included), read with psutil every ``--poll-s`` seconds. Whenever
a new checkpoint appears it is copied aside with the CPU time read at that moment (an upper
bound of the true time: it is read after the file was written); the process is stopped once it
passes the budget. Afterwards, outside the budget, the latest snapshot taken at or before each
CPU-second mark is evaluated on the test frames (``test.xyz``): force MAE in meV/Å per
component, energy MAE in meV per frame.

- zoo: ``zoo.train.run.train`` on the recipe (``--recipe``) with ``torch.set_num_threads``;
  snapshot = ``checkpoints/last.ckpt`` (rewritten every epoch), evaluated with the EMA weights
  (what the zoo validates and exports), projected where the recipe relaxes.
- MACE: ``mace_run_train`` in its own virtual environment (mace-torch pins e3nn 0.4.4), built on
  first use; snapshot = every ``checkpoints/<tag>_epoch-<n>[_swa].pt`` (``--save_all_checkpoints``
  writes one per epoch, with the EMA weights); evaluated by ``benchmarks/_mace_side.py``.

Writes ``benchmarks/results/accuracy_per_cpu.{json,png}`` and prints a table::

    nice -n 10 python benchmarks/bench_accuracy_per_cpu.py          # 2 x 30 CPU-min, ~2 h wall
    nice -n 10 python benchmarks/bench_accuracy_per_cpu.py --budget-cpu-s 150 --test-frames 100 \
        --work-dir /work/runs/bench-smoke --output /tmp/acc/accuracy_per_cpu.json   # smoke run

On two cores the sides can train at the same time, one per core, and be joined afterwards (how
the committed results were made)::

    python benchmarks/bench_accuracy_per_cpu.py --only zoo --work-dir W/zoo --output W/zoo.json &
    python benchmarks/bench_accuracy_per_cpu.py --only mace --work-dir W/mace --output W/mace.json
    python benchmarks/bench_accuracy_per_cpu.py --join W/zoo.json W/mace.json

``--seed N`` changes the initialisation (and batch order) of both sides, not the data split, for
repeats (``accuracy_per_cpu.seed1.json``). (MACE's first epoch takes ~110-130 CPU-s here, so a
smoke budget under that has no MACE point.)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil  # a torch-geometric dependency
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(BENCH))

from _machine import machine  # noqa: E402 - benchmarks/ is on sys.path as a script

RESULTS = BENCH / "results" / "accuracy_per_cpu.json"
RECIPE = BENCH / "recipes" / "aspirin-cpu.yaml"
MACE_SIDE = BENCH / "_mace_side.py"
MARKER = ".bench-accuracy-per-cpu"  # marks a side's folder as ours, so a rerun may clear it
ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"  # MACE's default keys, passed explicitly
MACE_PACKAGES = ["torch==2.13.0", "mace-torch==0.3.16"]
# MACE's standard recipe (the rMD17 settings of the MACE paper), at the model size.
MACE_CONFIG: dict[str, Any] = {
    "model": "MACE", "hidden_irreps": "32x0e + 32x1o", "max_ell": 3, "correlation": 3,
    "num_interactions": 2, "r_max": 5.0, "E0s": "average", "batch_size": 5,
    "valid_batch_size": 10, "lr": 0.01, "ema_decay": 0.99, "loss": "weighted",
    "energy_weight": 1.0, "forces_weight": 1000.0, "swa_energy_weight": 1000.0,
    "swa_forces_weight": 100.0, "swa_lr": 0.001, "default_dtype": "float64", "seed": 0,
}
MACE_FLAGS = ["--amsgrad", "--ema", "--swa", "--keep_checkpoints", "--save_all_checkpoints",
              "--save_cpu"]


# --------------------------------------------------------------------------- data


def write_split(recipe: Any, folder: Path) -> dict[str, Any]:
    """The recipe's train / val frames as extended XYZ for MACE: exactly the zoo's frames.

    ``load_rmd17`` records each row's ``frame_index`` in ``train.xyz``; the frames are written
    in that order with the labels under MACE's keys (no calculator, so no ambiguity).
    """
    from ase import Atoms
    from ase.io import write

    from zoo.data import data_root, load_rmd17, read_frames

    d = recipe["data"]
    source = (Path(d["root"]) if d["root"] else data_root()) / "rmd17" / d["molecule"]
    common = dict(root=d["root"], seed=d["split_seed"], n_train=d["n_train"], n_val=d["n_val"])
    frames = read_frames(source / "train.xyz", labels="require")
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split in ("train", "val"):
        rows = load_rmd17(d["molecule"], split, **common)
        out = []
        for row in rows:
            atoms = frames[row["frame_index"]]
            frame = Atoms(numbers=atoms.numbers, positions=atoms.positions)
            frame.info[ENERGY_KEY] = atoms.get_potential_energy()
            frame.arrays[FORCES_KEY] = atoms.get_forces()
            if abs(frame.info[ENERGY_KEY] - row["energy"]) > 1e-9:  # same frame as the zoo's?
                raise RuntimeError(f"frame {row['frame_index']}: energy differs from the zoo's")
            out.append(frame)
        write(folder / f"{split}.xyz", out, format="extxyz")
        counts[split] = len(out)
    return {"source": str(source), "test_file": str(source / "test.xyz"), **counts,
            "split_seed": d["split_seed"]}


# --------------------------------------------------------------------------- budgeted runs


class TreeCpuClock:
    """CPU seconds (user + system) of a process and all its descendants, reaped ones included."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.last = 0.0

    def __call__(self) -> float:
        try:
            total = _cpu(self.process.cpu_times())
            for child in self.process.children(recursive=True):
                try:
                    total += _cpu(child.cpu_times())
                except psutil.Error:  # exited between listing and reading
                    pass
        except psutil.Error:  # the process itself has exited: keep the last reading
            return self.last
        self.last = max(self.last, total)
        return self.last


def _cpu(times: Any) -> float:
    return times.user + times.system + times.children_user + times.children_system


def run_with_budget(
    command: list[str], env: dict[str, str], log: Path, budget_s: float, poll_s: float,
    on_poll: Callable[[float], None],
) -> dict[str, Any]:
    """Run ``command`` until it exits or its CPU time passes ``budget_s``; ``on_poll(cpu)``
    looks for new checkpoints every ``poll_s`` seconds (and once more at the end)."""
    started = time.monotonic()
    with open(log, "w") as out:
        # Own session, so the whole tree can be stopped without touching anything else.
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    clock = TreeCpuClock(process.pid)
    cpu, stopped = 0.0, False
    try:
        while process.poll() is None:
            time.sleep(poll_s)
            cpu = clock()
            on_poll(cpu)
            if cpu >= budget_s:
                stopped = True
                break
    finally:
        if process.poll() is None:
            _stop(process)
    on_poll(cpu)  # a checkpoint written since the last poll, at the last CPU reading
    if not stopped and process.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"{command[:3]} failed (exit {process.returncode}); {log}:\n{tail}")
    return {"cpu_seconds": round(cpu, 1), "wall_seconds": round(time.monotonic() - started, 1),
            "stopped_at_budget": stopped, "exit_code": process.returncode, "log": str(log)}


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Snapshots:
    """Copies of a run's checkpoints, each with the training CPU time when it was seen.

    ``watch`` yields ``(key, path)`` of the checkpoints now on disk; a new key is copied into
    ``folder`` and kept once it loads (a file caught half-written is retried at the next poll,
    still with the CPU time of its first sighting).
    """

    def __init__(self, folder: Path, watch: Callable[[], list[tuple[Any, Path]]],
                 describe: Callable[[Path, dict], dict[str, Any]]) -> None:
        self.folder, self.watch, self.describe = folder, watch, describe
        self.seen: set = set()
        self.first_seen: dict[Any, float] = {}
        self.records: list[dict[str, Any]] = []
        self.started = time.monotonic()
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, cpu: float) -> None:
        for key, path in self.watch():
            if key in self.seen:
                continue
            self.first_seen.setdefault(key, cpu)
            incoming = self.folder / "incoming.tmp"
            try:
                shutil.copy2(path, incoming)
                checkpoint = torch.load(incoming, map_location="cpu", weights_only=True)
            except Exception:  # noqa: BLE001 - partial file (or gone): retry at the next poll
                continue
            record = self.describe(path, checkpoint)
            incoming.rename(self.folder / record["file"])
            # Rounded up, so that a snapshot never looks earlier than it was.
            record.update(cpu_seconds=math.ceil(self.first_seen.pop(key) * 100) / 100,
                          wall_seconds=round(time.monotonic() - self.started, 1))
            self.records.append(record)
            self.seen.add(key)
            (self.folder / "snapshots.json").write_text(json.dumps(self.records, indent=2))
            print(f"  snapshot {record['file']} at {record['cpu_seconds']:.0f} CPU-s", flush=True)


def fresh_folder(folder: Path) -> Path:
    """``folder`` emptied for a new run; refuses to clear a folder this script did not make."""
    if folder.exists():
        if not (folder / MARKER).exists():
            raise FileExistsError(f"{folder} exists and was not made by this benchmark")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("made by benchmarks/bench_accuracy_per_cpu.py\n")
    return folder


def thread_env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


# --------------------------------------------------------------------------- zoo side

ZOO_TRAIN = """
import sys, torch
torch.set_num_threads(int(sys.argv[3])); torch.set_num_interop_threads(int(sys.argv[3]))
from zoo.train.run import train
train(sys.argv[1], sys.argv[2], progress=False, export=False, overrides={"seed": int(sys.argv[4])})
"""


def train_zoo(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Train the zoo recipe under the budget, snapshotting ``last.ckpt`` at every epoch."""
    run = folder / "run"
    last = run / "checkpoints" / "last.ckpt"

    def watch() -> list[tuple[Any, Path]]:
        try:
            stat = last.stat()
        except FileNotFoundError:
            return []
        return [((stat.st_mtime_ns, stat.st_size), last)]

    def describe(path: Path, checkpoint: dict) -> dict[str, Any]:
        # Lightning's "epoch" is the index of the epoch that just ended.
        return {"file": f"epoch-{int(checkpoint['epoch']) + 1:04d}.ckpt",
                "epochs": int(checkpoint["epoch"]) + 1,
                "checkpoint_cpu_seconds": checkpoint.get("cpu_seconds")}

    snapshots = Snapshots(folder / "snapshots", watch, describe)
    env = thread_env(args.threads)  # ZOO_DATA_DIR, where set, passes through
    command = [sys.executable, "-c", ZOO_TRAIN, str(args.recipe), str(run), str(args.threads),
               str(args.seed)]
    info = run_with_budget(command, env, folder / "train.log", args.budget_cpu_s, args.poll_s,
                           snapshots)
    return {**info, "snapshots": snapshots.records}


def evaluate_zoo(args: argparse.Namespace, folder: Path, chosen: list[dict]) -> dict[str, dict]:
    """Test MAEs of the chosen zoo snapshots: the recipe's model rebuilt the way training built
    it (same normalisation fit), the snapshot's weights, then its EMA weights over them."""
    from zoo import relax
    from zoo.tasks import get_task
    from zoo.train.recipe import load_recipe
    from zoo.train.run import model_to_train

    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.recipe, {"data": {"max_test_frames": args.test_frames}})
    dtype = getattr(torch, recipe.training.dtype)
    task = get_task(recipe.data.dataset)
    with torch.random.fork_rng(devices=[]):  # the weights are overwritten: no RNG side effects
        train_data, _, test_data = task.load_splits(recipe, dtype)
        model = model_to_train(task, recipe, train_data, None)
    results = {}
    for record in chosen:
        checkpoint = torch.load(folder / "snapshots" / record["file"], map_location="cpu",
                                weights_only=True)
        state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()
                 if k.startswith("model.")}
        snapshot = copy.deepcopy(model)
        snapshot.load_state_dict(state, strict=True)
        if "ema" in checkpoint:
            params = dict(snapshot.named_parameters())
            with torch.no_grad():
                for name, value in checkpoint["ema"]["shadow"].items():
                    params[name].copy_(value)
        if relax.branches(snapshot):
            relax.project(snapshot)  # what the zoo validates and publishes
        metrics = task.evaluate(snapshot.eval(), test_data, args.eval_batch_size)
        results[record["file"]] = metrics
        print(f"  zoo {record['file']}: energy {metrics['energy_mae']:.2f} meV, forces "
              f"{metrics['forces_mae']:.2f} meV/Å", flush=True)
    return results


# --------------------------------------------------------------------------- MACE side


def mace_python(venv: Path) -> Path:
    """The venv's Python, creating the venv with mace-torch on first use."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"building the MACE environment in {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *MACE_PACKAGES], check=True)
    return python


def mace_versions(python: Path) -> dict[str, str]:
    out = subprocess.run([str(python), str(MACE_SIDE), "versions"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def mace_arguments(args: argparse.Namespace, split: Path, run: Path) -> list[str]:
    """``mace_run_train`` arguments. MACE puts Stage Two (SWA: energy weight 1 -> 1000, force
    weight 1000 -> 100, lr 1e-3) at 3/4 of ``max_num_epochs``, so the epochs are sized to the
    budget (``--mace-epoch-cpu-s``) to let Stage Two happen within it."""
    epochs = mace_epochs(args)
    config = {**MACE_CONFIG, "default_dtype": args.mace_dtype, "seed": args.seed,
              "max_num_epochs": epochs,
              "eval_interval": 1, "energy_key": ENERGY_KEY, "forces_key": FORCES_KEY}
    paths = {"name": "aspirin", "train_file": split / "train.xyz",
             "valid_file": split / "val.xyz", "device": "cpu", "work_dir": run,
             "log_dir": run / "logs", "model_dir": run, "checkpoints_dir": run / "checkpoints",
             "results_dir": run / "results"}
    return [f"--{k}={v}" for k, v in {**config, **paths}.items()] + MACE_FLAGS


def mace_epochs(args: argparse.Namespace) -> int:
    """MACE's ``max_num_epochs``: given, or the budget over the estimated CPU-s per epoch."""
    return args.mace_epochs or max(2, round(args.budget_cpu_s / args.mace_epoch_cpu_s))


def train_mace(args: argparse.Namespace, folder: Path, split: Path,
               python: Path) -> dict[str, Any]:
    """Train MACE under the budget, snapshotting every epoch's checkpoint."""
    run = folder / "run"
    checkpoints = run / "checkpoints"
    pattern = re.compile(r"_epoch-(\d+)(_swa)?\.pt$")

    def watch() -> list[tuple[Any, Path]]:
        return [(p.name, p) for p in sorted(checkpoints.glob("*_epoch-*.pt"))]

    def describe(path: Path, checkpoint: dict) -> dict[str, Any]:
        match = pattern.search(path.name)
        return {"file": path.name, "epochs": int(match.group(1)) + 1,
                "stage_two": bool(match.group(2))}

    snapshots = Snapshots(folder / "snapshots", watch, describe)
    mace_args = mace_arguments(args, split, run)
    command = [str(python), str(MACE_SIDE), "train", "--threads", str(args.threads),
               "--template", str(folder / "template.json"), "--", *mace_args]
    info = run_with_budget(command, thread_env(args.threads), folder / "train.log",
                           args.budget_cpu_s, args.poll_s, snapshots)
    return {**info, "snapshots": snapshots.records, "arguments": mace_args}


def evaluate_mace(args: argparse.Namespace, folder: Path, chosen: list[dict], test_file: str,
                  python: Path) -> dict[str, dict]:
    """Test MAEs of the chosen MACE snapshots, computed with MACE's code in its venv."""
    listing = folder / "to_evaluate.json"
    listing.write_text(json.dumps([str(folder / "snapshots" / r["file"]) for r in chosen]))
    output = folder / "evaluated.json"
    command = [str(python), str(MACE_SIDE), "evaluate", "--template",
               str(folder / "template.json"), "--snapshots", str(listing), "--test", test_file,
               "--output", str(output), "--threads", str(args.threads), "--dtype",
               args.mace_dtype, "--batch-size", str(args.eval_batch_size)]
    if args.test_frames is not None:
        command += ["--max-frames", str(args.test_frames)]
    subprocess.run(command, check=True, env=thread_env(args.threads), cwd=ROOT)
    return {Path(r.pop("snapshot")).name: r for r in json.loads(output.read_text())}


# --------------------------------------------------------------------------- results


def latest_at(records: list[dict], mark: float) -> dict | None:
    """The last snapshot taken at or before ``mark`` CPU seconds."""
    before = [r for r in records if r["cpu_seconds"] <= mark]
    return max(before, key=lambda r: r["cpu_seconds"]) if before else None


def print_table(results: dict[str, Any]) -> None:
    sides = [s for s in ("zoo", "mace") if s in results["sides"]]
    print(f"\naspirin test set ({results['test_frames']} frames), "
          f"{results['machine']['torch_threads']} thread(s), {results['machine']['cpu']}")
    header = f"{'CPU-s':>7}{'CPU-min':>8}"
    for side in sides:
        header += f"  {side + ' F (meV/Å)':>15}{side + ' E (meV)':>13}{'epochs':>7}"
    print(header)
    for point in results["points"]:
        line = f"{point['cpu_seconds']:>7.0f}{point['cpu_seconds'] / 60:>8.1f}"
        for side in sides:
            m = point.get(side)
            line += (f"  {m['forces_mae']:>15.2f}{m['energy_mae']:>13.2f}{m['epochs']:>7}"
                     if m else f"  {'-':>15}{'-':>13}{'-':>7}")
        print(line)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in zip(axes, ("forces_mae", "energy_mae"),
                              ("test force MAE (meV/Å)", "test energy MAE (meV)"), strict=True):
        for side, style in (("zoo", "o-"), ("mace", "s--")):
            rows = [(p["cpu_seconds"] / 60, p[side][key]) for p in results["points"]
                    if p.get(side)]
            if rows:
                ax.plot(*zip(*rows, strict=True), style, label=results["labels"][side])
        ax.set(xlabel="training CPU minutes", ylabel=label, yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"rMD17 aspirin, 950 training frames, {results['threads']} thread(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: dict[str, Any], output: Path) -> dict[str, Any]:
    """Write the JSON and its plot beside it, and print the table."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, output.with_suffix(".png"))
    print_table(results)
    print(f"\nwrote {output} and {output.with_suffix('.png')}")
    return results


def join(paths: list[Path]) -> dict[str, Any]:
    """One results dict from one-side runs (``--only zoo`` and ``--only mace``, e.g. run at the
    same time on two cores), which must share the marks, split, budget, seed and test frames."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    shared = ("marks_cpu_s", "split", "budget_cpu_s", "test_frames", "threads", "seed")
    for part, path in zip(parts[1:], paths[1:], strict=True):
        differs = [k for k in shared if part.get(k) != parts[0].get(k)]
        if differs:
            raise ValueError(f"{path} differs from {paths[0]} in {', '.join(differs)}: "
                             "only runs of the same benchmark settings can be joined")
    results = {**parts[0], "sides": {}, "machine_by_side": {},
               "joined_from": [str(p) for p in paths]}
    for part in parts:
        for side, run in part["sides"].items():
            if side in results["sides"]:
                raise ValueError(f"two of the files hold the {side} side")
            results["sides"][side] = run
            results["machine_by_side"][side] = part["machine"]  # each its own load average
            if side == "mace":
                results["mace_config"] = part["mace_config"]
            else:
                results["zoo_recipe"] = part["zoo_recipe"]
    for i, point in enumerate(results["points"]):
        for part in parts:
            point.update({k: v for k, v in part["points"][i].items() if k in part["sides"]})
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, default=RECIPE, help="zoo recipe (yaml)")
    parser.add_argument("--budget-cpu-s", type=float, default=1800.0,
                        help="training CPU seconds per side")
    parser.add_argument("--marks", help="comma-separated CPU-second marks (default: six equal "
                        "steps up to the budget: 300, 600, ..., 1800)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    parser.add_argument("--test-frames", type=int, help="first N test frames (default: all)")
    parser.add_argument("--eval-batch-size", type=int, default=32)
    parser.add_argument("--poll-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation seed of both sides (the data split stays fixed)")
    parser.add_argument("--only", choices=["zoo", "mace"], help="run one side only")
    parser.add_argument("--skip-training", action="store_true",
                        help="re-evaluate the snapshots already in --work-dir")
    parser.add_argument("--work-dir", type=Path, default=Path("/work/runs/bench-accuracy-per-cpu"),
                        help="runs, snapshots and the MACE data files")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON (the PNG beside it)")
    parser.add_argument("--mace-venv", type=Path, default=Path("/work/runs/mace-venv"))
    parser.add_argument("--mace-dtype", default="float64", choices=["float32", "float64"],
                        help="MACE's training dtype (its default: float64)")
    parser.add_argument("--mace-epochs", type=int,
                        help="MACE max_num_epochs (default: budget / --mace-epoch-cpu-s)")
    # 100-115 CPU-s measured here (float64, 1 thread, 950 frames, other jobs on the CPU): with
    # 1800 s that is 18 epochs, Stage Two from epoch 12, i.e. in the last ~quarter of the budget.
    parser.add_argument("--mace-epoch-cpu-s", type=float, default=100.0,
                        help="estimated CPU seconds of one MACE epoch (sizes max_num_epochs)")
    parser.add_argument("--join", type=Path, nargs="+", metavar="RESULT",
                        help="join the results files of one-side runs into --output (no "
                             "training, no evaluation)")
    args = parser.parse_args(argv)
    if args.join:
        return write_results(join(args.join), args.output)
    args.recipe = args.recipe.resolve()
    marks = ([float(m) for m in args.marks.split(",")] if args.marks
             else [args.budget_cpu_s * i / 6 for i in range(1, 7)])
    sides = [args.only] if args.only else ["zoo", "mace"]
    torch.set_num_threads(args.threads)

    from zoo.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, {"seed": args.seed})
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    split = write_split(recipe, work / "data")
    python = mace_python(args.mace_venv) if "mace" in sides else None
    state_file = work / "training.json"
    trained = json.loads(state_file.read_text()) if state_file.exists() else {}
    results: dict[str, Any] = {
        "points": [], "zoo_recipe": {"path": str(args.recipe), **recipe.to_dict()},
        "mace_config": {**MACE_CONFIG, "default_dtype": args.mace_dtype, "seed": args.seed,
                        "flags": MACE_FLAGS},
        "seed": args.seed,
        "machine": machine(args.threads), "threads": args.threads,
        "budget_cpu_s": args.budget_cpu_s, "marks_cpu_s": marks, "split": split,
        "test_frames": args.test_frames or "all", "sides": {},
        "cpu_time": "user+system CPU seconds of the training process tree (psutil), read when "
                    "a checkpoint was first seen (polled every "
                    f"{args.poll_s:g} s); evaluation is not counted",
        "labels": {"zoo": f"zoo ({recipe['model']['architecture']} "
                          f"{recipe['model']['preset']}, {recipe['training']['dtype']})",
                   "mace": f"MACE ({MACE_CONFIG['hidden_irreps'].replace(' ', '')}, "
                           f"{args.mace_dtype})"},
    }
    for side in sides:
        folder = work / side
        if not args.skip_training:
            print(f"training {side} for {args.budget_cpu_s:g} CPU-s ...", flush=True)
            folder = fresh_folder(folder)
            if side == "zoo":
                trained[side] = train_zoo(args, folder)
            else:
                trained[side] = train_mace(args, folder, work / "data", python)
            state_file.write_text(json.dumps(trained, indent=2) + "\n")
        if side not in trained:
            raise FileNotFoundError(f"no {side} training recorded in {state_file}")
    for side in sides:
        folder, run = work / side, trained[side]
        chosen = {r["file"]: r for m in marks if (r := latest_at(run["snapshots"], m))}
        print(f"evaluating {len(chosen)} {side} snapshot(s) ...", flush=True)
        if not chosen:  # no checkpoint within the budget (e.g. a very short smoke run)
            metrics = {}
        elif side == "zoo":
            metrics = evaluate_zoo(args, folder, list(chosen.values()))
        else:
            metrics = evaluate_mace(args, folder, list(chosen.values()), split["test_file"],
                                    python)
        results["sides"][side] = {k: v for k, v in run.items() if k != "snapshots"}
        results["sides"][side]["snapshots"] = run["snapshots"]
        for record in chosen.values():
            record.update(metrics[record["file"]])
    if "mace" in sides:
        results["mace_config"]["versions"] = mace_versions(python)
        arguments = trained["mace"]["arguments"]
        results["mace_config"]["arguments"] = arguments
        epochs = int(next(a for a in arguments if a.startswith("--max_num_epochs=")).split("=")[1])
        # MACE's own rule when --start_swa is not given (mace.tools.scripts_utils.get_swa).
        results["mace_config"].update(max_num_epochs=epochs,
                                      stage_two_from_epoch=max(1, epochs // 4 * 3))
    for mark in marks:
        point: dict[str, Any] = {"cpu_seconds": mark}
        for side in sides:
            r = latest_at(trained[side]["snapshots"], mark)
            point[side] = None if r is None else {
                "forces_mae": r["forces_mae"], "energy_mae": r["energy_mae"],
                "snapshot_cpu_seconds": r["cpu_seconds"], "epochs": r["epochs"],
                **({"stage_two": r["stage_two"]} if "stage_two" in r else {}),
            }
        results["points"].append(point)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    return write_results(results, args.output)


if __name__ == "__main__":
    main()
