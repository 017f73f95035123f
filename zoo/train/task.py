"""The Lightning modules of training, and the relaxation callback.

The relaxation plugs into Lightning as a callback that drives the level controller, while the
module adds the CR regulariser to the loss and validates the *projected* model (levels at zero,
which is exactly the projected function) every epoch. :class:`RelaxedTask` holds what every
dataset shares; each dataset's family subclasses it with its loss and metrics.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import DistributedSampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from zoo import relax
from zoo.symmetry import sample_rotations
from zoo.train.ema import WeightEMA
from zoo.train.molecules import rotate_batch
from zoo.units import EV_TO_MEV


@contextlib.contextmanager
def projected_levels(model: torch.nn.Module):
    """Temporarily set every branch level to 0: the model computes its projected function."""
    saved = [b.level for b in relax.branches(model)]
    relax.set_levels(model, 0.0)
    try:
        yield model
    finally:
        for branch, level in zip(relax.branches(model), saved, strict=True):
            branch.level = level


class RelaxedTask(L.LightningModule):
    """Shared training of a zoo model with optional relaxation (subclassed per dataset).

    The subclass defines :meth:`task_loss` (the loss and what to log on a training batch) and
    :meth:`validation_metrics`; this class adds the CR regulariser to the loss, validates the
    *projected* model (every level at 0), builds seeded loaders that make DDP reproduce a
    single-process run, and configures the optimiser and schedule from the recipe.

    Parameters
    ----------
    model
        A zoo model (relaxed or not).
    recipe
        The merged recipe (:func:`zoo.train.recipe.load_recipe`).
    train_data, val_data
        Sequences of samples: PyG ``Data`` graphs or tuples of tensors.
    """

    def __init__(self, model, recipe: dict[str, Any], train_data, val_data):
        super().__init__()
        self.model = model
        self.recipe = recipe
        self.train_data, self.val_data = train_data, val_data
        self.lambda_reg = float(recipe["relaxation"].get("lambda_reg", 0.0))
        decay = float(recipe["training"].get("ema_decay", 0.0) or 0.0)
        levels = {id(p) for p in relax.level_parameters(model)}
        # The EMA averages what the optimiser trains; levels belong to the controller.
        self.ema = WeightEMA(
            {k: p for k, p in model.named_parameters() if p.requires_grad and id(p) not in levels},
            decay,
        ) if decay > 0 else None
        self._ema_stack = contextlib.ExitStack()
        # CPU and wall seconds spent in earlier (resumed-from) segments of the run.
        self._cpu_offset, self._wall_offset = 0.0, 0.0
        self._cpu_start, self._wall_start = time.process_time(), time.time()

    # --- what each dataset defines ---------------------------------------------------------
    def task_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The task loss of a (training) batch and the metrics to log, ``train/``-prefixed."""
        raise NotImplementedError

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        """Metrics of the projected model on a validation batch, ``val/``-prefixed."""
        raise NotImplementedError

    @staticmethod
    def batch_size_of(batch) -> int:
        """Number of samples in a batch."""
        if hasattr(batch, "num_graphs"):
            return int(batch.num_graphs)
        return int(batch[0].shape[0])

    # --- data ------------------------------------------------------------------------------
    def _loader(self, data, batch_size: int, shuffle: bool):
        # A DistributedSampler even on one device: with the same seed, the union of the ranks'
        # batches at each step is the single-device batch, so DDP reproduces a plain run.
        sampler = DistributedSampler(
            data,
            num_replicas=self.trainer.world_size,
            rank=self.trainer.global_rank,
            shuffle=shuffle,
            seed=int(self.recipe["seed"]),
            drop_last=False,
        )
        if len(data) and isinstance(data[0], Data):
            return DataLoader(data, batch_size=batch_size, sampler=sampler)
        return TorchDataLoader(data, batch_size=batch_size, sampler=sampler)

    def train_dataloader(self):
        per_device = int(self.recipe["training"]["batch_size"]) // self.trainer.world_size
        return self._loader(self.train_data, max(per_device, 1), shuffle=True)

    def val_dataloader(self):
        return self._loader(
            self.val_data, int(self.recipe["training"]["eval_batch_size"]), shuffle=False
        )

    # --- steps -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        task_loss, logs = self.task_loss(batch)
        penalty = relax.relaxation_penalty(self.model)
        loss = task_loss + self.lambda_reg * penalty["total"]
        n = self.batch_size_of(batch)
        logs = {
            "train/loss": loss,
            "train/task_loss": task_loss,
            **logs,
            "train/reg_norm": penalty["norm"],
            "train/reg_lie": penalty["lie"],
        }
        self.log_dict(
            {k: v.detach().float() for k, v in logs.items()},
            on_step=False, on_epoch=True, sync_dist=True, batch_size=n,
            prog_bar=False,
        )
        self.log("loss", loss.detach().float(), prog_bar=True, on_step=True, on_epoch=False,
                 batch_size=n)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.ema is not None:
            self.ema.update()

    def on_train_epoch_end(self) -> None:
        # Cumulative CPU time of the run (all threads of this process, every segment): the
        # x axis of accuracy-per-CPU-second comparisons.
        self.log("time/cpu_s", self.cpu_seconds(), on_step=False, on_epoch=True)

    def cpu_seconds(self) -> float:
        """CPU seconds this run has used so far, over all its resumed segments."""
        return self._cpu_offset + time.process_time() - self._cpu_start

    def wall_seconds(self) -> float:
        """Wall-clock seconds of training so far, over all its resumed segments."""
        return self._wall_offset + time.time() - self._wall_start

    def on_validation_epoch_start(self) -> None:
        # Validation (and model selection) sees the averaged weights, which are exported.
        if self.ema is not None:
            self._ema_stack.enter_context(self.ema.applied())

    def on_validation_epoch_end(self) -> None:
        self._ema_stack.close()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        checkpoint["cpu_seconds"] = self.cpu_seconds()
        checkpoint["wall_seconds"] = self.wall_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
        self._cpu_offset = float(checkpoint.get("cpu_seconds", 0.0))
        self._wall_offset = float(checkpoint.get("wall_seconds", 0.0))
        self._cpu_start, self._wall_start = time.process_time(), time.time()

    def validation_step(self, batch, batch_idx: int) -> None:
        with projected_levels(self.model):
            metrics = self.validation_metrics(batch)
        self.log_dict(
            {k: v.detach().float() for k, v in metrics.items()},
            on_step=False, on_epoch=True, sync_dist=True, batch_size=self.batch_size_of(batch),
            prog_bar=True,
        )

    # --- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        levels = {id(p) for p in relax.level_parameters(self.model)}
        params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in levels]
        opt_cfg, sched_cfg = self.recipe["optimizer"], self.recipe["schedule"]
        amsgrad = bool(opt_cfg.get("amsgrad", False))
        if opt_cfg["name"] == "adamw":
            optimizer = torch.optim.AdamW(
                params, lr=opt_cfg["lr"], weight_decay=opt_cfg["weight_decay"], amsgrad=amsgrad
            )
        elif opt_cfg["name"] == "adam":
            # Adam's L2 weight decay (the Vector Neurons and EGNN reference code use it).
            optimizer = torch.optim.Adam(
                params, lr=opt_cfg["lr"], weight_decay=opt_cfg.get("weight_decay", 0.0),
                amsgrad=amsgrad,
            )
        elif opt_cfg["name"] == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=opt_cfg["lr"], momentum=opt_cfg.get("momentum", 0.9),
                weight_decay=opt_cfg.get("weight_decay", 0.0),
            )
        else:
            raise ValueError(f"optimizer {opt_cfg['name']!r} is not supported (adamw, adam, sgd)")
        epochs = int(self.recipe["training"]["epochs"])
        warmup = int(sched_cfg.get("warmup_epochs", 0))
        floor = float(sched_cfg.get("min_lr_ratio", 0.0))
        name = sched_cfg["name"]
        if name not in ("cosine", "constant", "step", "plateau"):
            raise ValueError(
                f"schedule {name!r} is not supported (cosine, constant, step, plateau)"
            )
        if name == "plateau":
            # MACE's schedule: independent of the total epochs, so a run can be extended
            # across sessions without changing what its earlier epochs did.
            from zoo.train.family import get_family

            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=float(sched_cfg.get("factor", 0.8)),
                patience=int(sched_cfg.get("patience", 5)),
                min_lr=float(opt_cfg["lr"]) * floor,
            )
            monitor = get_family(self.recipe["data"]["dataset"]).validation_curve
            return {"optimizer": optimizer, "lr_scheduler": {
                "scheduler": plateau, "interval": "epoch", "monitor": monitor}}

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            if name == "constant":
                return 1.0
            if name == "step":  # StepLR(step_size, gamma), as the Vector Neurons reference
                steps = (epoch - warmup) // int(sched_cfg["step_size"])
                return float(sched_cfg["gamma"]) ** steps
            progress = (epoch - warmup) / max(epochs - warmup, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "epoch"}}


class EnergyForceTask(RelaxedTask):
    """Energy/force regression (rMD17): weighted L1 or MSE of energies and forces.

    Parameters
    ----------
    model
        A zoo model returning ``{"energy", "forces"}`` (relaxed or not).
    recipe
        The merged recipe (:func:`zoo.train.recipe.load_recipe`).
    train_graphs, val_graphs
        PyG graphs with ``energy``, ``forces`` and ``sample`` attributes.
    """

    def _errors(self, batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        out = self.model(batch)
        energy_error = out["energy"] - batch.energy
        forces_error = out["forces"] - batch.forces
        return energy_error, forces_error, out

    def task_loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.recipe["training"]["augment_rotations"]:
            rotations = sample_rotations(
                batch.sample, self.current_epoch, int(self.recipe["seed"]), batch.pos.dtype
            )
            batch = rotate_batch(batch, rotations)
        energy_error, forces_error, _ = self._errors(batch)
        loss_cfg = self.recipe["loss"]
        if loss_cfg["kind"] == "l1":
            energy_loss, forces_loss = energy_error.abs().mean(), forces_error.abs().mean()
        elif loss_cfg["kind"] == "huber":
            delta = float(loss_cfg.get("huber_delta", 0.01))
            zeros_e, zeros_f = torch.zeros_like(energy_error), torch.zeros_like(forces_error)
            energy_loss = torch.nn.functional.huber_loss(energy_error, zeros_e, delta=delta)
            forces_loss = torch.nn.functional.huber_loss(forces_error, zeros_f, delta=delta)
        else:
            energy_loss, forces_loss = energy_error.pow(2).mean(), forces_error.pow(2).mean()
        task_loss = (
            loss_cfg["energy_weight"] * energy_loss.to(forces_loss.dtype)
            + loss_cfg["forces_weight"] * forces_loss
        )
        return task_loss, {
            "train/energy_mae_mev": energy_error.abs().mean() * EV_TO_MEV,
            "train/forces_mae_mev": forces_error.abs().mean() * EV_TO_MEV,
        }

    def validation_metrics(self, batch) -> dict[str, torch.Tensor]:
        energy_error, forces_error, _ = self._errors(batch)
        return {
            "val/energy_mae_mev": energy_error.detach().abs().mean().float() * EV_TO_MEV,
            "val/forces_mae_mev": forces_error.detach().abs().mean().float() * EV_TO_MEV,
        }


class RelaxationCallback(L.Callback):
    """Drives a level controller from Lightning's hooks; its state goes into checkpoints."""

    def __init__(self, controller: relax.LevelController) -> None:
        self.controller = controller

    def setup(self, trainer, pl_module, stage: str) -> None:
        if not self.controller.branches:
            self.controller.attach(pl_module.model)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.controller.on_epoch_start(trainer.current_epoch, trainer.max_epochs)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.controller.on_before_optimizer_step()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        for i, level in enumerate(self.controller.levels()):
            pl_module.log(f"level/{i}", float(level), on_step=False, on_epoch=True)

    def state_dict(self) -> dict[str, Any]:
        return self.controller.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.controller.load_state_dict(state_dict)
