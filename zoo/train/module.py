"""The one Lightning module of training (every task), and the relaxation callback.

The relaxation plugs into Lightning as a callback that drives the level controller, while the
module adds the CR regulariser to the task's loss and validates the *projected* model (levels at
zero, which is exactly the projected function) every epoch. What differs between benchmarks (the
loss and validation metrics of a batch) is the task's (:class:`zoo.tasks.base.Task`). This module
and :mod:`zoo.train.run` (the Trainer) are the only ones that import Lightning.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import DistributedSampler
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from zoo import relax
from zoo.tasks.base import RootMeanSquare
from zoo.train.ema import WeightEMA

if TYPE_CHECKING:
    from zoo.tasks.base import Task
    from zoo.train.recipe_schema import Recipe


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


class TrainingModule(L.LightningModule):
    """Training of a zoo model on a task, with optional relaxation.

    The task gives the loss of a training batch and the metrics of a validation batch; this
    module adds the CR regulariser to the loss, validates the *projected* model (every level at
    0), builds seeded loaders that make DDP reproduce a single-process run, and configures the
    optimiser and schedule from the recipe.

    Parameters
    ----------
    model
        A zoo model (relaxed or not).
    task
        The recipe's task (:func:`zoo.tasks.get_task`).
    recipe
        The typed recipe (:func:`zoo.train.recipe.load_recipe`).
    train_data, val_data
        Sequences of samples: PyG ``Data`` graphs or tuples of tensors.
    """

    def __init__(self, model, task: Task, recipe: Recipe, train_data, val_data):
        super().__init__()
        self.model = model
        self.task = task
        self.recipe = recipe
        self.train_data, self.val_data = train_data, val_data
        self.lambda_reg = recipe.relaxation.lambda_reg
        # The branches stay attached for the whole fit (projection comes after it): looked up
        # once here, not on every step. A plain list, so not registered as submodules again.
        self.relaxed_branches = relax.branches(model)
        decay = recipe.training.ema_decay
        levels = {id(p) for p in relax.level_parameters(model)}
        # The EMA averages what the optimiser trains; levels belong to the controller.
        self.ema = WeightEMA(
            {k: p for k, p in model.named_parameters() if p.requires_grad and id(p) not in levels},
            decay,
        ) if decay > 0 else None
        self._ema_stack = contextlib.ExitStack()
        # Epoch-level validation metrics (RootMeanSquare): [sum of squares, count] each.
        self._root_mean_squares: dict[str, list[torch.Tensor]] = {}
        # CPU and wall seconds spent in earlier (resumed-from) segments of the run.
        self._cpu_offset, self._wall_offset = 0.0, 0.0
        self._cpu_start, self._wall_start = time.process_time(), time.time()

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
            seed=self.recipe.seed,
            drop_last=False,
        )
        if len(data) and isinstance(data[0], Data):
            return DataLoader(data, batch_size=batch_size, sampler=sampler)
        return TorchDataLoader(data, batch_size=batch_size, sampler=sampler)

    def train_dataloader(self):
        per_device = self.recipe.training.batch_size // self.trainer.world_size
        return self._loader(self.train_data, max(per_device, 1), shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_data, self.recipe.training.eval_batch_size, shuffle=False)

    # --- steps -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        task_loss, logs = self.task.training_loss(self.model, batch, self.recipe,
                                                  self.current_epoch)
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
        self._log_branch_terms(n)
        return loss

    def _log_branch_terms(self, batch_size: int) -> None:
        """Each branch's symmetry-violation term of this step as ``lie/<site>`` (epoch mean over
        the steps that computed it: with ``penalty_every = k`` every k-th step)."""
        for i, branch in enumerate(self.relaxed_branches):
            terms = branch.last_penalty
            if terms is not None:
                self.log(f"lie/{i}", terms["lie"].detach().float(), on_step=False, on_epoch=True,
                         sync_dist=True, batch_size=batch_size)

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
        self._root_mean_squares = {}

    def on_validation_epoch_end(self) -> None:
        for name, (squared, count) in self._root_mean_squares.items():
            squared = self.trainer.strategy.reduce(squared, reduce_op="sum")
            count = self.trainer.strategy.reduce(count, reduce_op="sum")
            self.log(name, (squared / count.clamp_min(1)).sqrt().float(), prog_bar=True)
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
        if batch_idx == 0 and self.relaxed_branches:
            self._log_branch_contributions(batch)
        with projected_levels(self.model):
            metrics = self.task.validation_metrics(self.model, batch)
        for name in [k for k, v in metrics.items() if isinstance(v, RootMeanSquare)]:
            value = metrics.pop(name)
            total = self._root_mean_squares.setdefault(
                name, [torch.zeros((), dtype=torch.float64, device=self.device),
                       torch.zeros((), dtype=torch.float64, device=self.device)])
            total[0] += value.squared_sum
            total[1] += value.count
        self.log_dict(
            {k: v.detach().float() for k, v in metrics.items()},
            on_step=False, on_epoch=True, sync_dist=True, batch_size=self.batch_size_of(batch),
            prog_bar=True,
        )

    def _log_branch_contributions(self, batch) -> None:
        """``branch/<site>``: ``||s g(x)|| / ||f_e(x)||`` of every site on the first validation
        batch, at the levels training left (not projected): how far each relaxed layer is from
        its equivariant base, per epoch (issue: why do the branches stay tiny?)."""
        contributions = relax.branch_contributions(self.model, self.task.model_inputs(batch))
        for i, values in enumerate(contributions.values()):
            self.log(f"branch/{i}", float(values["relative"]), on_step=False, on_epoch=True,
                     batch_size=1)

    # --- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        levels = {id(p) for p in relax.level_parameters(self.model)}
        params = [p for p in self.model.parameters() if p.requires_grad and id(p) not in levels]
        o, sc = self.recipe.optimizer, self.recipe.schedule
        if o.name == "adamw":
            optimizer = torch.optim.AdamW(
                params, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad
            )
        elif o.name == "adam":
            # Adam's L2 weight decay (the Vector Neurons and EGNN reference code use it).
            optimizer = torch.optim.Adam(
                params, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad
            )
        elif o.name == "sgd":
            optimizer = torch.optim.SGD(
                params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay
            )
        else:
            raise ValueError(f"optimizer {o.name!r} is not supported (adamw, adam, sgd)")
        epochs = self.recipe.training.epochs
        warmup = sc.warmup_epochs
        floor = sc.min_lr_ratio
        name = sc.name
        if name not in ("cosine", "constant", "step", "plateau"):
            raise ValueError(
                f"schedule {name!r} is not supported (cosine, constant, step, plateau)"
            )
        if name == "plateau":
            # MACE's schedule: independent of the total epochs, so a run can be extended
            # across sessions without changing what its earlier epochs did.
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=sc.factor, patience=sc.patience,
                min_lr=o.lr * floor,
            )
            return {"optimizer": optimizer, "lr_scheduler": {
                "scheduler": plateau, "interval": "epoch", "monitor": self.task.validation_curve}}

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            if name == "constant":
                return 1.0
            if name == "step":  # StepLR(step_size, gamma), as the Vector Neurons reference
                steps = (epoch - warmup) // sc.step_size
                return sc.gamma ** steps
            progress = (epoch - warmup) / max(epochs - warmup, 1)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler,
                                                         "interval": "epoch"}}


    def lr_scheduler_step(self, scheduler, metric) -> None:
        # Lightning calls this after each epoch's checkpoint, and a resumed run never makes the
        # call for the epoch it resumes after: so the annealing stage sets its rates at each
        # epoch's start instead (on_train_epoch_start), and the plateau stops one epoch before it.
        anneal_start = self.recipe.schedule.anneal_start
        if anneal_start is None or self.current_epoch + 1 < anneal_start:
            scheduler.step() if metric is None else scheduler.step(metric)

    def on_train_epoch_start(self) -> None:
        sc = self.recipe.schedule
        if sc.anneal_start is None or self.current_epoch < sc.anneal_start:
            return
        final = self.recipe.optimizer.lr * sc.min_lr_ratio
        progress = min((self.current_epoch - sc.anneal_start) / sc.anneal_epochs, 1.0)
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                # Where the plateau had got to; kept in the group, so in checkpoints too.
                start = group.setdefault("anneal_initial_lr", group["lr"])
                group["lr"] = final + (start - final) * 0.5 * (1 + math.cos(math.pi * progress))


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
