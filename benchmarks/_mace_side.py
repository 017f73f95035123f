"""The MACE half of ``bench_accuracy_per_cpu.py``, run by the Python of MACE's own environment.

mace-torch pins e3nn 0.4.4 while the zoo needs e3nn >= 0.5, so MACE lives in a separate virtual
environment and this file imports nothing from the zoo (only torch, ase and mace). Two
subcommands::

    python _mace_side.py train --threads 1 --template T.model -- [mace_run_train arguments]
    python _mace_side.py evaluate --template T.model --snapshots S.json --test test.xyz \
        --output R.json [--max-frames N] [--threads 1] [--dtype float64]

``train`` runs MACE's own training entry point (``mace.cli.run_train.main``, what the
``mace_run_train`` console script runs) with the torch thread count set first. MACE checkpoints
(``checkpoints/<name>_run-<seed>_epoch-<n>[_swa].pt``) hold only state dicts
(``{"model", "optimizer", "lr_scheduler"}``), while the model's construction depends on
statistics computed from the training data (E0s, average neighbour count, force scale). So
``train`` also records the model's constructor arguments as ``run_train`` built it, once, just
before the first epoch (``--template``, JSON via MACE's ``extract_config_mace_model``; nothing is
pickled); ``evaluate`` rebuilds the model from it and loads each snapshot's ``"model"`` state
dict strictly. MACE saves its checkpoints inside ``ema.average_parameters()``, so with
``--ema`` the ``"model"`` entry already holds the EMA weights, the ones MACE validates and
exports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

EV_TO_MEV = 1000.0
# Classes and functions a template may name (its activation, interaction and readout blocks).
_ALLOWED_MODULES = ("mace.", "torch.", "e3nn.")


def encode_config(model: torch.nn.Module) -> dict[str, Any]:
    """JSON-ready constructor arguments of a built MACE model, with its class name."""
    from e3nn import o3
    from mace.tools.scripts_utils import extract_config_mace_model

    out: dict[str, Any] = {"class": type(model).__name__}
    for key, value in extract_config_mace_model(model).items():
        if isinstance(value, o3.Irreps):
            out[key] = {"irreps": str(value)}
        elif isinstance(value, torch.Tensor):
            out[key] = {"tensor": value.tolist(), "dtype": str(value.dtype).split(".")[-1]}
        elif isinstance(value, np.ndarray):
            out[key] = {"array": value.tolist(), "dtype": str(value.dtype)}
        elif isinstance(value, type) or callable(value):
            out[key] = {"callable": f"{value.__module__}:{value.__qualname__}"}
        else:
            out[key] = value
    return out


def build_from_config(encoded: dict[str, Any]) -> torch.nn.Module:
    """The MACE model of :func:`encode_config` (weights as initialised: load a state dict)."""
    from e3nn import o3
    from mace import modules

    config: dict[str, Any] = {}
    for key, value in encoded.items():
        if key == "class":
            continue
        if isinstance(value, dict) and "irreps" in value:
            config[key] = o3.Irreps(value["irreps"])
        elif isinstance(value, dict) and "tensor" in value:
            config[key] = torch.tensor(value["tensor"], dtype=getattr(torch, value["dtype"]))
        elif isinstance(value, dict) and "array" in value:
            config[key] = np.asarray(value["array"], dtype=value["dtype"])
        elif isinstance(value, dict) and "callable" in value:
            module, _, name = value["callable"].partition(":")
            if not module.startswith(_ALLOWED_MODULES):
                raise ValueError(f"template names {module!r}, outside {_ALLOWED_MODULES}")
            target: Any = importlib.import_module(module)
            for part in name.split("."):
                target = getattr(target, part)
            config[key] = target
        else:
            config[key] = value
    return getattr(modules, encoded["class"])(**config)


def train(threads: int, template: Path, mace_args: list[str]) -> None:
    """Run ``mace_run_train`` with ``threads`` torch threads, recording the built model first."""
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    import mace.tools
    from mace.cli import run_train

    original = mace.tools.train

    def train_and_save_template(*args: Any, **kwargs: Any) -> Any:
        # run_train calls ``tools.train(model=model, ...)`` once the model is fully configured.
        template.parent.mkdir(parents=True, exist_ok=True)
        template.write_text(json.dumps(encode_config(kwargs["model"]), indent=1) + "\n")
        return original(*args, **kwargs)

    mace.tools.train = train_and_save_template
    sys.argv = ["mace_run_train", *mace_args]
    run_train.main()


def _labels(frames: list) -> tuple[np.ndarray, np.ndarray]:
    energies = np.array([a.get_potential_energy() for a in frames], dtype=np.float64)
    forces = np.concatenate([a.get_forces() for a in frames]).astype(np.float64)
    return energies, forces


def evaluate(
    template: Path,
    snapshots: list[str],
    test: Path,
    max_frames: int | None,
    threads: int,
    dtype: str,
    batch_size: int,
) -> list[dict[str, Any]]:
    """Test energy MAE (meV per frame) and force MAE (meV/Å per component) of each snapshot."""
    import ase.io
    from mace import data
    from mace.tools import torch_geometric, torch_tools, utils

    torch.set_num_threads(threads)
    torch_tools.set_default_dtype(dtype)
    frames = ase.io.read(test, index=":" if max_frames is None else f":{max_frames}")
    energies, forces = _labels(frames)
    model = build_from_config(json.loads(template.read_text()))
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    graphs = [
        data.AtomicData.from_config(data.config_from_atoms(a), z_table=z_table,
                                    cutoff=float(model.r_max))
        for a in frames
    ]
    results = []
    for path in snapshots:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"], strict=True)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        pred_e, pred_f = [], []
        loader = torch_geometric.dataloader.DataLoader(graphs, batch_size=batch_size,
                                                       shuffle=False, drop_last=False)
        for batch in loader:
            out = model(batch.to_dict(), training=False, compute_force=True)
            pred_e.append(out["energy"].detach().double().numpy())
            pred_f.append(out["forces"].detach().double().numpy())
        e_err = np.abs(np.concatenate(pred_e) - energies)
        f_err = np.abs(np.concatenate(pred_f) - forces)
        results.append({
            "snapshot": str(path),
            "energy_mae": round(float(e_err.mean()) * EV_TO_MEV, 4),
            "forces_mae": round(float(f_err.mean()) * EV_TO_MEV, 4),
            "n_frames": len(frames),
        })
        print(f"{Path(path).name}: energy {results[-1]['energy_mae']:.2f} meV, forces "
              f"{results[-1]['forces_mae']:.2f} meV/Å", flush=True)
    return results


def versions() -> dict[str, str]:
    """Versions of MACE and of what it runs on in this environment."""
    import e3nn
    import mace

    return {"mace": mace.__version__, "e3nn": e3nn.__version__, "torch": torch.__version__,
            "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="run mace_run_train (arguments after --)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--template", type=Path, required=True)
    p.add_argument("mace_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("evaluate", help="test MAEs of checkpoint snapshots")
    p.add_argument("--template", type=Path, required=True)
    p.add_argument("--snapshots", type=Path, required=True, help="JSON list of checkpoint paths")
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--batch-size", type=int, default=32)
    sub.add_parser("versions", help="print the versions as JSON")
    args = parser.parse_args(argv)
    if args.command == "train":
        mace_args = args.mace_args[1:] if args.mace_args[:1] == ["--"] else args.mace_args
        train(args.threads, args.template, mace_args)
    elif args.command == "evaluate":
        results = evaluate(args.template, json.loads(args.snapshots.read_text()), args.test,
                           args.max_frames, args.threads, args.dtype, args.batch_size)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    else:
        print(json.dumps(versions()))


if __name__ == "__main__":
    main()
