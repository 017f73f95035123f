"""The ``zoo`` command line: list, info, download, predict, verify, train, publish."""

from __future__ import annotations

import argparse
import json
import sys
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
        print(f"{name:40s} {entry.architecture:12s} {entry.dataset:20s} {metrics}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo.hub.pretrained import info

    print(json.dumps(info(args.name), indent=2, default=str))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from zoo.hub.download import download

    path = download(args.name, revision=args.revision, cache_dir=args.cache_dir)
    print(path)
    return 0


def _write_predictions(frames: list, result: dict[str, Any], output: Path) -> None:
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    for atoms, energy, forces in zip(frames, result["energy"], result["forces"], strict=True):
        atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=forces)
    write(output, frames, format="extxyz")


def _predict_point_cloud(model, args: argparse.Namespace) -> int:
    from zoo.point_clouds import predict_point_cloud, read_point_cloud

    result = predict_point_cloud(model, read_point_cloud(args.frames),
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
        Path(args.output).write_text(text + "\n")
        print(f"wrote class probabilities of {len(rows)} cloud(s) to {args.output}")
    else:
        print(text)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import zoo
    from zoo.data import read_frames

    model = zoo.load(args.name, device=args.device, dtype=args.dtype)
    if Path(args.frames).suffix.lower() in (".npy", ".ply"):
        return _predict_point_cloud(model, args)
    frames = read_frames(args.frames, labels="ignore")
    result = zoo.predict(model, frames, batch_size=args.batch_size)
    output = Path(args.output or Path(args.frames).with_suffix(".pred.xyz"))
    _write_predictions(frames, result, output)
    print(f"wrote energies (eV) and forces (eV/Å) of {len(frames)} frame(s) to {output}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    import zoo
    from zoo.verify import verify

    model = zoo.load(args.name, dtype="float64" if args.float64 else None)
    result = verify(model, data_root=args.data_root)
    errors = result["equivariance_error"]
    print(f"equivariance error: float64 {errors['float64']:.2e}, float32 {errors['float32']:.2e}")
    if result["metrics"] is None:
        print(f"test metrics not re-measured: {result['skipped']}")
    else:
        for key, card_value in (result["card_metrics"] or {}).items():
            print(f"{key:12s} card {card_value:10.4f}   measured {result['metrics'][key]:10.4f}")
        print("metrics match the card" if result["metrics_match"] else "METRICS DIFFER")
    ok = errors["float64"] < 1e-9 and result["metrics_match"] is not False
    return 0 if ok else 1


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
    run = train(
        args.recipe, args.output, epochs=args.epochs, devices=args.devices,
        init_from=args.init_from, resume=args.resume, progress=not args.no_progress,
        overrides=overrides,
    )
    print(f"run folder: {run}")
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

    p = sub.add_parser("predict", help="energies and forces of the frames of an (ext)xyz file, "
                       "or class probabilities of a point cloud (.npy, .ply)")
    p.add_argument("name", help="model name or folder")
    p.add_argument("frames", help="input file readable by ase (xyz, extxyz, ...), or a point "
                   "cloud (.npy [n, 3] or [b, n, 3], .ply)")
    p.add_argument("-o", "--output", help="output extended xyz (default FRAMES.pred.xyz); for "
                   "point clouds a JSON file (default: print)")
    p.add_argument("--top", type=int, default=5, help="point clouds: classes to list")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("verify", help="re-measure equivariance and the card's test metrics")
    p.add_argument("name")
    p.add_argument("--data-root", help="data folder (default: ZOO_DATA_DIR or ../shared/data)")
    p.add_argument("--float64", action="store_true", help="evaluate in float64")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("train", help="train a recipe (a .yaml file or a published model's name)")
    p.add_argument("recipe")
    p.add_argument("--output", help="run folder (default runs/<name>)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--devices", type=int, help="processes for DDP (torchrun-compatible)")
    p.add_argument("--init-from", help="fine-tune a published model, relaxation re-enabled")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--seed", type=int, help="override the recipe's seed")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override any recipe entry, e.g. --set training.batch_size=32")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("publish", help="upload a model folder to the Hub and tag it")
    p.add_argument("folder")
    p.add_argument("repo_id")
    p.add_argument("--tag")
    p.add_argument("--private", action="store_true")
    p.set_defaults(func=_cmd_publish)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``zoo`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError, OSError, LookupError) as err:
        # Expected user errors: one clear line, no traceback.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"zoo {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
