"""The training loop: warmup and step decay, mixed precision on GPU, atomic checkpoints, exact
resumption, JSON-lines metrics and a progress bar; DistributedDataParallel under torchrun.

Distributed (a process group initialised, see engine/distributed.py): every rank builds the model
from the same seed, trains on its shard of each global batch (train.batch_size images per process,
batch_size x world_size in all, which is what the linear scaling rule sees), and rank 0 alone
writes checkpoints, metrics.jsonl and the progress bar. Resuming on another number of processes
continues at the same iteration with the same learning-rate schedule; the data stream continues
from that global batch index, but a global batch then holds batch_size x new_world_size images
drawn with the new sharding, so the run is no longer bit-identical to an uninterrupted one.
"""

import json
import logging
import os
import time
from pathlib import Path

import torch
from tqdm import tqdm

from simpledet.accel.cuda_graphs import enable_cuda_graphs
from simpledet.api import build_model, resolve_device
from simpledet.config import Config, save_config, to_dict
from simpledet.data.coco import CocoDetection
from simpledet.data.loader import build_train_loader
from simpledet.engine import distributed as dist_utils
from simpledet.engine.checkpoint import atomic_torch_save, load_weights, save_weights
from simpledet.engine.distill import build_distiller
from simpledet.engine.labels import check_num_classes, label_lookup
from simpledet.engine.optimizer import build_optimizer
from simpledet.engine.precision import autocast, autocast_dtype
from simpledet.engine.rng import rng_state, seed_everything, set_rng_state
from simpledet.engine.schedule import lr_factor, scaled_lr
from simpledet.errors import UserError
from simpledet.files import atomic_write_text
from simpledet.modeling.norm import SyncBatchNorm2d

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pth"
LAST_FILE = "last_checkpoint"


class Trainer:
    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.world_size, self.rank = dist_utils.get_world_size(), dist_utils.get_rank()
        self.is_main = self.rank == 0
        if dist_utils.is_initialized():
            self.device = dist_utils.init_from_env(cfg.train.device)  # cuda:LOCAL_RANK on GPU
        else:
            self.device = resolve_device(cfg.train.device)
        seed_everything(cfg.train.seed)  # the same on every rank: identical initial weights

        data = cfg.data
        self.dataset = CocoDetection(data.train.ann_file, data.train.image_dir, train=True, flip_copies=data.flip,
                                     with_masks=cfg.model.predicts_masks)
        check_num_classes(cfg, self.dataset)
        self.labels = label_lookup(cfg, self.dataset)

        self.model = build_model(cfg).to(self.device)
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)  # convolutions pass NHWC on
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
        self.distiller = build_distiller(cfg, self.model, self.device) if cfg.distill is not None else None
        self.total_batch = cfg.train.batch_size * self.world_size
        self.base_lr = scaled_lr(cfg.train.lr, cfg.train.lr_reference_batch, self.total_batch)
        trainable = [self.model] + ([self.distiller] if self.distiller is not None else [])
        self.amp_dtype = autocast_dtype(cfg.train.amp, cfg.train.amp_dtype, self.device)
        self.optimizer = build_optimizer(trainable, cfg.train, self.base_lr, self.device)
        # dynamic loss scaling for fp16 (SimpleDet used a fixed 128): grows while gradients stay
        # finite, halves and skips the step when they overflow; its state is in the checkpoints
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.start_iter = 0
        if self.world_size > 1:
            # Each rank its own random stream for proposal/RoI sampling (the weights are built).
            seed_everything(cfg.train.seed + self.rank)
        if resume:
            self._resume()
        self.ddp_model = self._wrap(self.model)
        self._speed_up()
        self.first_bad = torch.tensor(-1, device=self.device)  # see step()
        if self.is_main:
            save_config(cfg, self.out / "config.json")

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around the model when more than one process trains."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        # Frozen parameters are fine for DDP; find_unused_parameters (slower) only on request,
        # for models whose graph skips trainable parameters at some iterations.
        find_unused = os.environ.get("SIMPLEDET_FIND_UNUSED_PARAMETERS", "") == "1"
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused,
                                       broadcast_buffers=has_per_rank_statistics(model))

    def _speed_up(self) -> None:
        """train.compile_backbone and train.cuda_graphs."""
        train = self.cfg.train
        if train.compile_backbone:
            # the backbone alone: its shapes vary only with the padded batch size, while the
            # heads' data-dependent shapes (proposals, sampled RoIs) would recompile
            self.model.backbone.compile(dynamic=True)
        if train.cuda_graphs:
            if train.compile_backbone or self.distiller is not None:
                raise UserError("train.cuda_graphs does not combine with "
                                + ("train.compile_backbone" if train.compile_backbone else
                                   "distillation (it reads the student's features through hooks a graph skips)"))
            enable_cuda_graphs(self.model, train.cuda_graph_shapes, self.device, heads=train.cuda_graph_heads)

    # ------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        last = self.out / LAST_FILE
        if not last.exists():
            log.warning("--resume: no checkpoint in %s, starting from scratch", self.out)
            return
        name = last.read_text().strip()
        load_weights(self.model, self.out / name)
        state = torch.load(self.out / STATE_FILE, map_location="cpu", weights_only=True)
        if state["weights"] != name:
            raise UserError(f"{self.out / STATE_FILE} belongs to {state['weights']}, not {name}")
        self.optimizer.load_state_dict(state["optimizer"])
        if self.distiller is not None:
            self.distiller.adapters.load_state_dict(state["distill_adapters"])
        self.scaler.load_state_dict(state["scaler"])
        ranks = state.get("rng_ranks")
        if ranks is not None and len(ranks) == self.world_size:
            set_rng_state(ranks[self.rank])  # same number of processes: each rank's own stream
        elif self.world_size == 1:
            set_rng_state(state["rng"])
        else:  # another number of processes: fresh per-rank streams, a function of the iteration
            seed_everything(self.cfg.train.seed + self.rank + 1000 * (state["iteration"] + 1))
        self.start_iter = state["iteration"]
        log.info("resumed from %s at iteration %d", name, self.start_iter)

    def save_checkpoint(self, iteration: int, final: bool = False) -> None:
        """Collective under DDP: every rank calls it (its RNG state is gathered), rank 0 writes,
        and a barrier keeps every rank from going on before the files are complete."""
        rngs = dist_utils.gather_objects(rng_state()) if self.world_size > 1 else None
        if self.is_main:
            self._write_checkpoint(iteration, final, rngs)
        dist_utils.barrier()

    def _write_checkpoint(self, iteration: int, final: bool, rngs: list[dict] | None) -> None:
        name = "model_final.safetensors" if final else f"model_{iteration:07d}.safetensors"
        meta = {"iteration": iteration, "config": to_dict(self.cfg),
                "categories": self.dataset.category_names, "category_ids": self.dataset.category_ids}
        save_weights(self.model, self.out / name, meta)
        state = {"weights": name, "iteration": iteration, "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": rng_state()}
        if rngs is not None:
            state["rng_ranks"] = rngs
        if self.distiller is not None:
            state["distill_adapters"] = self.distiller.adapters.state_dict()
        atomic_torch_save(state, self.out / STATE_FILE)
        atomic_write_text(self.out / LAST_FILE, name + "\n")  # the commit point
        self._prune(keep=self.cfg.train.keep_checkpoints, current=name)

    def _prune(self, keep: int, current: str) -> None:
        old = sorted(self.out.glob("model_[0-9]*.safetensors"))
        for path in old[:-keep] if keep > 0 else []:
            if path.name != current:
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)

    # ------------------------------------------------------------ one step
    def _to_device(self, target: dict) -> dict:
        """The tensors of a target (boxes, labels, masks, ...), labels mapped to the model's."""
        out = {k: v.to(self.device, non_blocking=True) for k, v in target.items() if isinstance(v, torch.Tensor)}
        out["labels"] = self.labels(target["labels"]).to(self.device)
        return out

    def step(self, iteration: int, images: list[torch.Tensor], targets: list[dict], weight: float = 1.0
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step on a batch: forward under autocast, the loss scaled by `weight` (0: a
        step that must take part in DDP's collectives without learning), backward, clipping, the
        update. Returns the loss and its parts, without waiting for the device."""
        cfg = self.cfg.train
        lr = self.base_lr * lr_factor(iteration, cfg.warmup_iters, cfg.warmup_factor, cfg.steps, cfg.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = [img.to(self.device, non_blocking=True) for img in images]
        targets = [self._to_device(t) for t in targets]
        with autocast(self.device, self.amp_dtype):
            losses = self.ddp_model(images, targets)
            if self.distiller is not None:
                losses["loss_distill"] = self.distiller.loss()
        loss = sum(losses.values())
        if weight != 1.0:
            loss = loss * weight
        # the first iteration whose loss was not finite (-1: none), kept on the device and read at
        # log and checkpoint steps only, so that no step waits for the device to check it
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), iteration, self.first_bad)  # no host-to-device copy
        # to None, not zeroed: with train.cuda_graphs a .grad may alias a graph's static gradient
        # buffer, which the next replay overwrites and would then add to itself
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.distiller is not None:
            dist_utils.average_gradients(self.distiller)  # DDP averages the model's only
        if cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss, losses

    def _stop_if_not_finite(self) -> None:
        """Reads the non-finite check (a wait for the device): every rank stops if any saw a bad loss."""
        dist_utils.all_reduce_max_(self.first_bad)
        if int(self.first_bad) >= 0:
            raise UserError(f"loss is not finite at iteration {int(self.first_bad) + 1}; training stopped. "
                            f"The last good checkpoint is in {self.out} (lower train.lr or set "
                            f"train.clip_grad_norm)")

    # ------------------------------------------------------------ the loop
    def train(self) -> Path:
        cfg = self.cfg.train
        self.model.train()
        if self.distiller is not None:
            self.distiller.train()
        loader = build_train_loader(self.dataset, cfg.batch_size, self.cfg.data.num_workers, cfg.seed,
                                    start_iter=self.start_iter, num_replicas=self.world_size, rank=self.rank,
                                    pin_memory=self.device.type == "cuda")
        batches = iter(loader)
        metrics = MetricsLog(self.out / "metrics.jsonl", self.world_size) if self.is_main else None
        bar = tqdm(total=cfg.max_iter, initial=self.start_iter, desc="train", dynamic_ncols=True,
                   mininterval=1.0, disable=not self.is_main)
        last_batch = None
        try:
            for iteration in range(self.start_iter, cfg.max_iter):
                images, targets = next(batches)
                weight = 1.0
                if not images:  # every image of the batch was unreadable: skipped, warned by the dataset
                    if self.world_size == 1:
                        continue
                    # The other ranks wait in DDP's all-reduce: this rank joins with zero gradients,
                    # running its previous batch with the loss multiplied by 0.
                    if last_batch is None:
                        raise UserError(f"rank {self.rank}: no readable image in its first batch")
                    images, targets, weight = *last_batch, 0.0
                last_batch = (images, targets)
                loss, losses = self.step(iteration, images, targets, weight)

                done = iteration + 1
                is_log = done % cfg.log_every == 0 or done == cfg.max_iter
                is_checkpoint = done % cfg.checkpoint_every == 0 or done == cfg.max_iter
                if is_log or is_checkpoint:
                    self._stop_if_not_finite()
                images_done = len(images) if weight else 0
                if is_log:
                    record = self._log_record(done, loss, losses)
                    if metrics is not None:
                        record = metrics.write(record, images_done)
                        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2g}",
                                        img_s=f"{record['images_per_s']:.1f}")
                elif metrics is not None:
                    metrics.count(images_done)
                if is_checkpoint:
                    self.save_checkpoint(done, final=done == cfg.max_iter)
                bar.update(1)
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        return self.out / "model_final.safetensors"

    def _log_record(self, done: int, loss: torch.Tensor, losses: dict[str, torch.Tensor]) -> dict:
        """The metrics of a log step: "loss" is the mean over ranks, its parts rank 0's."""
        total = loss.detach()
        if self.world_size > 1:
            total = dist_utils.all_reduce_mean_(total.float().clone())
        return {"iteration": done, "lr": self.optimizer.param_groups[0]["lr"], "loss": float(total),
                **{k: float(v.detach()) for k, v in losses.items()}}


class MetricsLog:
    """metrics.jsonl: one JSON line a log step, with the images per second since the last one."""

    def __init__(self, path: Path, world_size: int) -> None:
        self.file = open(path, "a")
        self.world_size = world_size
        self.window_start, self.window_images = time.perf_counter(), 0

    def count(self, images: int) -> None:
        self.window_images += images

    def write(self, record: dict, images: int) -> dict:
        self.count(images)
        elapsed = time.perf_counter() - self.window_start
        record = {**record, "images_per_s": self.window_images * self.world_size / max(elapsed, 1e-9)}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        self.window_start, self.window_images = time.perf_counter(), 0
        return record

    def close(self) -> None:
        self.file.close()


def has_per_rank_statistics(model: torch.nn.Module) -> bool:
    """Whether a rank's buffers can differ from rank 0's during training: only plain BatchNorm's
    running statistics, which each rank updates from its own images. DDP's default broadcasts
    every buffer from rank 0 before each forward; frozen BN's statistics are the same everywhere
    (loaded once, or synchronised when DDP is built), and SyncBN updates its statistics from all
    ranks' batches, so for the zoo's models that broadcast is a collective per step for nothing
    (detectron2 and mmdetection turn it off too). It also writes into the frozen statistics without
    bumping their version counters, which the folded-BN caches and the CUDA graphs key on."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
               and not isinstance(m, (SyncBatchNorm2d, torch.nn.SyncBatchNorm)) for m in model.modules())
