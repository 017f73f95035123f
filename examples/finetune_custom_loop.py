"""Fine-tune a published model in your own training loop, with relaxation re-enabled.

Starts from ``equiformer-md17-aspirin`` (bundled: no network), fine-tunes it on 50 ethanol frames
of the shared rMD17 data in a plain PyTorch loop, projects it back to an exactly equivariant
model and measures it on other ethanol frames. About a minute on 2 CPU cores::

    ZOO_DATA_DIR=../shared/data python examples/finetune_custom_loop.py
    python examples/finetune_custom_loop.py --frames 200 --epochs 8 --data my_frames.xyz

The four steps that matter, whatever the loop:

1. ``zoo.load(name, relaxed=True)`` attaches fresh non-equivariant branches (the method the model
   was trained with, or CR). They start as the same function (their output layers are zero) at
   a positive level, so they receive gradients from the first step.
2. ``zoo.refit_reference_energies(model, frames)``: the per-element reference energies of the
   source molecule would leave a keV offset in the loss. Elements the model never saw are
   refused.
3. A level controller drives the branch levels ``s`` in ``f(x) = f_e(x) + s g(x)``: call
   ``on_epoch_start(epoch, n_epochs)`` every epoch and ``on_before_optimizer_step()`` after
   ``backward``, and keep the levels out of the optimiser (``zoo.relax.level_parameters``). CR's
   triangle rises and comes down over the run; ``cooldown_epochs=1`` trains the last epoch at
   level 0, so the model projected at the end is the one that epoch trained. (Without a
   controller the levels stay where ``zoo.load`` put them.)
4. ``zoo.relax.project(model)`` drops the branches: exactly the base architecture again, exactly
   equivariant, ready for ``zoo.save_pretrained``.

``zoo.finetune`` / ``zoo finetune`` do all of this (and more: validation, checkpoints, a card)
in one call.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

import zoo
from zoo.data import data_root
from zoo.data.labelled import read_labelled
from zoo.tasks.rmd17.task import evaluate_energy_forces, rows_to_data
from zoo.testing import equivariance_error


def main(
    n_frames: int = 50,
    epochs: int = 4,
    n_test: int = 50,
    data: str | Path | None = None,
    test_data: str | Path | None = None,
    model_name: str = "equiformer-md17-aspirin",
    lr: float = 5e-4,
    batch_size: int = 8,
    seed: int = 0,
    threads: int | None = 1,
) -> dict:
    """Fine-tune, project and evaluate; returns the test metrics and what was measured."""
    start = time.time()
    torch.manual_seed(seed)
    if threads:
        # Molecule batches of a small model are tiny tensors: more threads only add
        # synchronisation (10x slower on a busy 2-core machine).
        torch.set_num_threads(threads)
    ethanol = data_root() / "rmd17" / "ethanol"
    train_rows = read_labelled(data or ethanol / "train.xyz")[:n_frames]
    test_rows = read_labelled(test_data or ethanol / "test.xyz")[:n_test]
    train_graphs = rows_to_data(train_rows, torch.float32)  # energies stay float64

    # 1. fresh branches, at a positive level; 2. references refit on the new frames.
    model = zoo.load(model_name, relaxed=True).train()
    zoo.refit_reference_energies(model, train_rows)

    # 3. the controller owns the levels; the optimiser trains everything else.
    controller = zoo.relax.make_controller("cr", schedule="triangle", cooldown_epochs=1)
    controller.attach(model)
    levels = {id(p) for p in zoo.relax.level_parameters(model)}
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad and id(p) not in levels], lr=lr
    )
    loader = DataLoader(train_graphs, batch_size=batch_size, shuffle=True)
    for epoch in range(epochs):
        controller.on_epoch_start(epoch, epochs)
        total = 0.0
        for batch in loader:
            out = model(batch)
            energy_error = (out["energy"] - batch.energy).abs().mean().float()
            forces_error = (out["forces"] - batch.forces).abs().mean()
            # The CR regulariser (branch norm and Lie derivative), weight 0.01 as in METHODS.md.
            loss = energy_error + 80.0 * forces_error
            loss = loss + 0.01 * zoo.relax.relaxation_penalty(model)["total"]
            optimizer.zero_grad()
            loss.backward()
            controller.on_before_optimizer_step()
            optimizer.step()
            total += float(loss.detach()) * batch.num_graphs
        print(f"epoch {epoch}: level {controller.levels()[0]:.2f}, "
              f"loss {total / len(train_graphs):.3f}")

    # 4. project: exactly the published architecture again.
    zoo.relax.project(model)
    model.eval()
    metrics = evaluate_energy_forces(model, rows_to_data(test_rows, torch.float32))
    metrics["equivariance_error_float64"] = equivariance_error(model, dtype=torch.float64)
    metrics["seconds"] = round(time.time() - start, 1)
    print(f"after projection, on {metrics['n_frames']} other frames: energy MAE "
          f"{metrics['energy_mae']:.1f} meV, force MAE {metrics['forces_mae']:.1f} meV/Å; "
          f"equivariance error (float64) {metrics['equivariance_error_float64']:.1e}; "
          f"{metrics['seconds']} s")
    metrics["model"] = model
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--test-frames", type=int, default=50)
    parser.add_argument("--data", help="training frames (default: the shared rMD17 ethanol)")
    parser.add_argument("--test-data", help="test frames (default: the shared ethanol test)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's)")
    args = parser.parse_args()
    main(args.frames, args.epochs, args.test_frames, args.data, args.test_data,
         threads=args.threads)
