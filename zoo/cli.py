"""The ``zoo`` command line: list, info, download, predict, verify, train, export, finetune,
publish."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo.hub.pretrained import get_pretrained, list_models

    names = list_models(args.pattern)
    if not names:
        print(f"no published model matches {args.pattern!r}")
    for name in names:
        entry = get_pretrained(name)
        metrics = ", ".join(f"{k}={v}" for k, v in entry.metrics.items())
        also = f"  (also: {', '.join(entry.aliases)})" if entry.aliases else ""
        print(f"{name:40s} {entry.architecture:12s} {entry.dataset:20s} {metrics}{also}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo.hub.pretrained import info

    print(json.dumps(info(args.name), indent=2, default=str))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from zoo.hub.download import download, model_cards_dir

    path = download(args.name, revision=args.revision, cache_dir=args.cache_dir)
    if path.parent.resolve() == model_cards_dir().resolve():
        print(f"{args.name} is bundled with zoo and verified; nothing to download "
              "(it is not on the Hub yet):", file=sys.stderr)
    print(path)
    return 0


#: Keys of the predictions in the extended XYZ that ``zoo predict`` writes; the input's own
#: ``energy`` and ``forces`` (reference labels, if any) are kept under their keys.
ENERGY_KEY, FORCES_KEY = "zoo_energy", "zoo_forces"


def _write_atomically(output: Path, write: Any) -> None:
    """``write(file)`` into a temporary file beside ``output``, then rename it over ``output``:
    a failed write leaves no partial file, and an earlier ``output`` as it was."""
    from zoo.data.cache import atomic_writer
    from zoo.errors import OutputError

    try:
        with atomic_writer(output, "w", encoding="utf-8") as out:
            write(out)
    except OSError as err:
        kept = " (the earlier file there is unchanged)" if output.exists() else ""
        raise OutputError(
            f"could not write {output}: {err.strerror or err}; nothing was written{kept}"
        ) from None


def _check_output(output: Path, source: str) -> None:
    from zoo.errors import OutputError

    same = output.resolve() == Path(source).resolve()
    if not same and output.exists() and Path(source).exists():
        import os

        same = os.path.samefile(output, source)
    if same:
        raise OutputError(
            f"the output {output} is the input file: writing there would destroy the input; "
            "choose another -o"
        )


def _write_predictions(frames: list, result: dict[str, Any], output: Path) -> None:
    import numpy as np
    from ase.io import write

    for atoms, energy, forces in zip(frames, result["energy"], result["forces"], strict=True):
        atoms.info[ENERGY_KEY] = float(energy)
        atoms.arrays[FORCES_KEY] = np.asarray(forces, dtype=np.float64).reshape(-1, 3)
    _write_atomically(output, lambda out: write(out, frames, format="extxyz"))


def _predict_point_cloud(model, args: argparse.Namespace) -> int:
    from zoo.point_clouds import predict_point_cloud, read_point_cloud

    n_points = "trained" if args.n_points is None else (args.n_points or None)
    result = predict_point_cloud(model, read_point_cloud(args.frames), n_points=n_points,
                                 batch_size=args.batch_size)
    classes = model.zoo_info.get("config", {}).get("classes") or [
        str(i) for i in range(result["probabilities"].shape[1])
    ]
    rows = []
    for probabilities in result["probabilities"]:
        order = probabilities.argsort()[::-1][: args.top]
        rows.append([{"class": classes[i], "probability": round(float(probabilities[i]), 6)}
                     for i in order])
    text = json.dumps(rows[0] if len(rows) == 1 else rows, indent=2)
    if args.output:
        _write_atomically(Path(args.output), lambda out: out.write(text + "\n"))
        print(f"wrote class probabilities of {len(rows)} cloud(s) to {args.output}")
    else:
        print(text)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import zoo
    from zoo.data import read_frames
    from zoo.hub.checkpoint import parse_device

    if args.output:
        _check_output(Path(args.output), args.frames)
    if args.device:
        parse_device(args.device)  # before the model is read: a bad name fails at once
    if not Path(args.frames).is_file():
        raise FileNotFoundError(f"no such file: {args.frames}")
    model = zoo.load(args.name, device=args.device, dtype=args.dtype)
    suffix = Path(args.frames).suffix.lower()
    if getattr(model, "input_kind", None) == "point_cloud" or suffix in (".npy", ".ply"):
        return _predict_point_cloud(model, args)
    frames = read_frames(args.frames, labels="ignore")
    result = zoo.predict(model, frames, batch_size=args.batch_size)
    output = Path(args.output or Path(args.frames).with_suffix(".pred.xyz"))
    _check_output(output, args.frames)
    _write_predictions(frames, result, output)
    print(f"wrote energies (eV, {ENERGY_KEY}) and forces (eV/Å, {FORCES_KEY}) of "
          f"{len(frames)} frame(s) to {output}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import zoo
    from zoo.verify import verify

    model = zoo.load(args.name, dtype="float64" if args.float64 else None)
    result = verify(model, data_root=args.data_root, metrics=not args.no_metrics)
    errors = result["equivariance_error"]
    print(f"equivariance error: float64 {errors['float64']:.2e}, float32 {errors['float32']:.2e}")
    measured_nothing = result["metrics"] is None and not args.no_metrics
    if result["metrics"] is None:
        print(f"test metrics not re-measured: {result['skipped']}")
        if measured_nothing:
            print("zoo verify: error: nothing was compared with the card's test metrics; give "
                  "the data with --data-root (or ZOO_DATA_DIR), or pass --no-metrics to check "
                  "equivariance only", file=sys.stderr)
    else:
        for key, card_value in (result["card_metrics"] or {}).items():
            print(f"{key:12s} card {card_value:10.4f}   measured {result['metrics'][key]:10.4f}")
        print("metrics match the card" if result["metrics_match"] else "METRICS DIFFER")
    ok = errors["float64"] < 1e-9 and result["metrics_match"] is not False
    return 0 if ok and not measured_nothing else 1


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["training.batch_size=32", ...]`` -> nested dict; values parsed as YAML scalars."""
    import yaml

    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects SECTION.KEY=VALUE, got {pair!r}")
        *sections, leaf = key.split(".")
        node = overrides
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = yaml.safe_load(value)
    return overrides


def _cmd_train(args: argparse.Namespace) -> int:
    from zoo.train.run import train

    overrides = _parse_overrides(args.set or [])
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.threads is not None:
        import torch

        # The command owns its process: this is the one place that sets torch's threads.
        torch.set_num_threads(args.threads)
    run = train(
        args.recipe, args.output, epochs=args.epochs, devices=args.devices,
        init_from=args.init_from, relaxation=args.relax, resume=args.resume,
        progress=not args.no_progress, overrides=overrides,
    )
    print(f"run folder: {run}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from zoo.train.snapshot import export_checkpoint

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    folder = export_checkpoint(args.run, args.output)
    print(f"model folder: {folder} (zoo.load({str(folder)!r}); card {folder / 'README.md'})")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from zoo.finetuning import TRAINING_FOLDER, finetune

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model, metrics, folder = finetune(
        args.name, args.train, args.output, val=args.val, val_fraction=args.val_fraction,
        test=args.test, relax=args.relax, epochs=args.epochs, energy_key=args.energy_key,
        forces_key=args.forces_key, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        resume=args.resume, progress=not args.no_progress,
        overrides=_parse_overrides(args.set or []),
    )
    split = ("test frames" if metrics["split"] == "test" else
             "validation frames (no --test file: not a held-out test)")
    print(f"fine-tuned model: {folder} (zoo.load({str(folder)!r}); card {folder / 'README.md'})")
    print(f"energy MAE {metrics['energy_mae']:.2f} meV, force MAE {metrics['forces_mae']:.2f} "
          f"meV/Å on {metrics['n_frames']} {split}; equivariance error (float64) "
          f"{metrics['equivariance_error']['float64']:.1e}")
    print(f"training logs and checkpoints: {folder / TRAINING_FOLDER}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from zoo.hub.publish import publish

    publish(args.folder, args.repo_id, revision_tag=args.tag, private=args.private)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="published models")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="registry entry of a model (metrics, licence, checksums)")
    p.add_argument("name")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("download", help="download a model into the Hugging Face cache")
    p.add_argument("name")
    p.add_argument("--revision")
    p.add_argument("--cache-dir")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "predict",
        help="energies and forces of the frames of a structure file, or class probabilities "
        "of a point cloud (.npy, .ply)",
        description="Energies and forces of every frame of a structure file (written to an "
        f"extended XYZ file: the predictions under {ENERGY_KEY} and {FORCES_KEY}, the input's "
        "own energy and forces kept as they were), or the class probabilities of a point cloud "
        "(.npy, .ply).",
    )
    p.add_argument("name", help="model name or folder")
    p.add_argument("frames", help="input: a structure file ase.io.read reads, by its "
                   "extension (.xyz/.extxyz, .pdb, .traj, .cif, .sdf, ...), or a point cloud "
                   "(.npy [n, 3] or [b, n, 3], .ply) for a point-cloud model")
    p.add_argument("-o", "--output", help="output extended xyz (default FRAMES.pred.xyz; never "
                   f"the input file), predictions under {ENERGY_KEY} (eV) and {FORCES_KEY} "
                   "(eV/Å); for point clouds a JSON file (default: print)")
    p.add_argument("--top", type=int, default=5, help="point clouds: classes to list")
    p.add_argument("--n-points", type=int, help="point clouds: a random subset (seed 0) of "
                   "this many points per cloud; default: as many as the model was trained on "
                   "(300 for the published models); 0: all points")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("verify", help="re-measure equivariance and the card's test metrics")
    p.add_argument("name")
    p.add_argument("--data-root", help="data folder (default: ZOO_DATA_DIR or ../shared/data)")
    p.add_argument("--float64", action="store_true", help="evaluate in float64")
    p.add_argument("--no-metrics", action="store_true", help="check equivariance only; without "
                   "it, a verification that could not re-measure the test metrics fails")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("train", help="train a recipe (a .yaml file or a published model's name)")
    p.add_argument("recipe")
    p.add_argument("--output", help="run folder (default runs/<name>)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--devices", type=int, help="processes for DDP (torchrun-compatible)")
    p.add_argument("--init-from", help="fine-tune a published model or a model folder "
                   "(reference energies refit; relaxation re-enabled, see --relax)")
    p.add_argument("--relax", choices=["cr", "ace", "recm", "none"],
                   help="relaxation method, over the recipe's; with --init-from and a recipe "
                   "without relaxation, the default is the model's own method, or cr")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override any recipe entry, e.g. --set training.batch_size=32")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of this process (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "export",
        help="export a training run's checkpoint as a model folder, without training (the "
        "run may still be training in another process)",
    )
    p.add_argument("run", help="a zoo train run folder")
    p.add_argument("--output", help="model folder to write (default <run>/snapshot-epoch<N>)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of this process (default: torch's choice)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "finetune",
        help="fine-tune an energy/force model on your own labelled frames, relaxed, then "
        "projected",
        description="Fine-tune a published energy/force model (or a model folder) on your own "
        "labelled frames with relaxation re-enabled, then project it back to an exactly "
        "equivariant model in --output, with its own card. The per-element reference energies "
        "are refit on your frames; elements the model never saw are refused. Energy/force "
        "models only (equiformer): fine-tune point-cloud and N-body models with "
        "zoo train RECIPE --init-from NAME.",
    )
    p.add_argument("name", help="published model name or model folder")
    p.add_argument("--train", required=True, metavar="FILE", help="training frames: any file "
                   "ase.io.read reads (.xyz/.extxyz, .traj, ...), energies in eV and forces in "
                   "eV/Å")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--val", metavar="FILE", help="validation frames")
    group.add_argument("--val-fraction", type=float, metavar="F",
                       help="fraction of --train held out for validation (default 0.1)")
    p.add_argument("--test", metavar="FILE", help="held-out test frames for the card's metrics "
                   "(default: the validation frames, and the card says so)")
    p.add_argument("--relax", choices=["cr", "ace", "recm", "none"],
                   help="relaxation method (default: the model's own, or cr)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--energy-key", default="energy", help="where the frames keep their energy")
    p.add_argument("--forces-key", default="forces", help="where the frames keep their forces")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (cosine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True, help="folder of the new model (it names it)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override any recipe entry, e.g. --set training.ema_decay=0.99")
    p.add_argument("--threads", type=int, help="torch threads (small models on small molecules "
                   "train fastest on 1; default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_finetune)

    p = sub.add_parser("publish", help="upload a model folder to the Hub and tag it")
    p.add_argument("folder")
    p.add_argument("repo_id")
    p.add_argument("--tag")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_cmd_publish)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # One line per warning, as for errors: the user needs the message, not our source line.
    print(f"zoo: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    from zoo.errors import ZooError

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores the warnings module as it was on return
            warnings.showwarning = _show_warning
            return args.func(args)
    except (ZooError, KeyError, ValueError, FileNotFoundError, OSError, LookupError) as err:
        # Expected user errors: one clear line, no traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"zoo {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
