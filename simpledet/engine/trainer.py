"""The training loop: warmup and step decay, mixed precision on GPU, atomic checkpoints, exact
resumption, JSON-lines metrics and a progress bar; DistributedDataParallel under torchrun.

Distributed (a process group initialised, see engine/distributed.py): every rank builds the model
from the same seed, trains on its shard of each global batch (train.batch_size images per process,
batch_size x world_size in all, which is what the linear scaling rule sees), and rank 0 alone
writes checkpoints, metrics.jsonl and the progress bar. Resuming on another number of processes
continues at the same iteration with the same learning-rate schedule; the data stream continues
from that global batch index, but a global batch then holds batch_size x new_world_size images
drawn with the new sharding, so the run is no longer bit-identical to an uninterrupted one.

A checkpoint is one commit: its weights (model_NNNNNNN.safetensors), their JSON and its training
state (model_NNNNNNN.state.pth) are each written whole (files.atomic_write), and only then does
`last_checkpoint` name it. Whatever instant the process dies, `last_checkpoint` names a complete
checkpoint, which --resume continues from. A write the system refuses (disk full) stops the run
with one message and leaves the previous checkpoint as it was.

An iteration is one optimizer step over train.accumulate micro-batches. With train.eval_every the
val split is scored every so many iterations and at the end (engine/validation.py): the stats go
to metrics.jsonl and TensorBoard, the best weights by train.best_metric to model_best.safetensors,
and train.patience stops a run that no longer improves. With train.ema_decay the weights files
hold the moving average (engine/ema.py), which is also what evaluation scores; the trained weights
are in the training state. Everything a resumed run needs to continue as if never stopped (the
average, the best score so far, the evaluations since, where the data stream is) is in the
training state too.
"""

import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from simpledet.accel.cuda_graphs import enable_cuda_graphs
from simpledet.api import build_model, resolve_device
from simpledet.config import Config, TrainConfig, parse_value, save_config, to_dict
from simpledet.data.datasets import open_dataset
from simpledet.data.loader import build_train_loader
from simpledet.engine import distributed as dist_utils
from simpledet.engine.checkpoint import atomic_torch_save, load_weights, read_training_state, save_weights
from simpledet.engine.crowdhuman_metrics import METRIC_NAMES as CROWDHUMAN_NAMES
from simpledet.engine.distill import build_distiller
from simpledet.engine.ema import ModelEMA
from simpledet.engine.evaluator import STAT_NAMES
from simpledet.engine.labels import check_num_classes, label_lookup, model_label_to_category_id
from simpledet.engine.optimizer import build_optimizer
from simpledet.engine.precision import autocast, autocast_dtype
from simpledet.engine.proposal_recall import AR_NAMES
from simpledet.engine.rng import rng_state, seed_everything, set_rng_state
from simpledet.engine.schedule import lr_factor, scaled_lr
from simpledet.engine.tensorboard_log import TensorBoardLog
from simpledet.engine.validation import ModelEvaluation, evaluate_model
from simpledet.errors import UserError
from simpledet.files import atomic_write_text, make_dir, remove_temp_files, write_error
from simpledet.modeling.norm import FrozenBatchNorm2d, SyncBatchNorm2d
from simpledet.structures.input_checks import check_targets, check_values

log = logging.getLogger(__name__)

LAST_FILE = "last_checkpoint"  # names the newest complete checkpoint: the commit point
BEST_FILE = "model_best.safetensors"  # the weights that scored best by train.best_metric
FINAL_FILE = "model_final.safetensors"


def state_path(weights: Path) -> Path:
    """The training state (optimizer, loss scaler, RNGs) of the checkpoint whose weights are `weights`."""
    return weights.with_suffix(".state.pth")


class Trainer:
    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool = False) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        check_loop_settings(cfg.train, metric_names(cfg))
        if not resume and (self.out / LAST_FILE).exists():
            raise UserError(f"{self.out} already holds the checkpoints of a run (the newest: "
                            f"{(self.out / LAST_FILE).read_text().strip()}): continue it with --resume, "
                            "or train into a new --out")
        make_dir(self.out)
        self.world_size, self.rank = dist_utils.get_world_size(), dist_utils.get_rank()
        self.is_main = self.rank == 0
        if dist_utils.is_initialized():
            self.device = dist_utils.init_from_env(cfg.train.device)  # cuda:LOCAL_RANK on GPU
        else:
            self.device = resolve_device(cfg.train.device)
        seed_everything(cfg.train.seed)  # the same on every rank: identical initial weights

        data = cfg.data
        self.dataset = open_dataset(data.train, train=True, flip_copies=data.flip,
                                    with_masks=cfg.model.predicts_masks,
                                    with_ignore_regions=cfg.model.trains_on_ignore_regions, key="data.train")
        check_num_classes(cfg, self.dataset)
        self.labels = label_lookup(cfg, self.dataset)
        self.val_dataset = self._open_val() if cfg.train.eval_every else None

        self.model = build_model(cfg).to(self.device)
        if cfg.train.init_from and not (resume and (self.out / LAST_FILE).exists()):
            from simpledet.weights.init_from import init_from  # fine-tuning; a resumed run's checkpoint wins

            init_from(self.model, cfg.train.init_from)
        refuse_frozen_bn_without_weights(cfg, self.model)
        self.model.check_input_values = False  # _to_device checks them on the CPU
        if cfg.train.channels_last:
            self.model.to(memory_format=torch.channels_last)  # convolutions pass NHWC on
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
        # a plain copy of the model: made before the distiller hooks it and CUDA graphs replace its methods
        self.ema = ModelEMA(self.model, cfg.train.ema_decay) if cfg.train.ema_decay else None
        self.distiller = build_distiller(cfg, self.model, self.device) if cfg.distill is not None else None
        self.accumulate = cfg.train.accumulate
        # images per optimizer step, what the linear scaling rule sees
        self.total_batch = cfg.train.batch_size * self.world_size * self.accumulate
        self.base_lr = scaled_lr(cfg.train.lr, cfg.train.lr_reference_batch, self.total_batch)
        trainable = [self.model] + ([self.distiller] if self.distiller is not None else [])
        self.amp_dtype = autocast_dtype(cfg.train.amp, cfg.train.amp_dtype, self.device)
        self.optimizer = build_optimizer(trainable, cfg.train, self.base_lr, self.device)
        # dynamic loss scaling for fp16 (SimpleDet used a fixed 128): grows while gradients stay
        # finite, halves and skips the step when they overflow; its state is in the checkpoints
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.start_iter = 0
        self.batches_done = 0  # micro-batches taken from the data stream: where a resumed run continues it
        self.best: dict | None = None  # metric, value and iteration of the best evaluation so far
        self.evals_since_best = 0
        if self.world_size > 1:
            # Each rank its own random stream for proposal/RoI sampling (the weights are built).
            seed_everything(cfg.train.seed + self.rank)
        if resume:
            self._resume()
        self.ddp_model = self._wrap(self.model)
        self.graphed = self._speed_up()
        self.first_bad = torch.tensor(-1, device=self.device)  # see step()
        self.skipped_steps = torch.zeros((), dtype=torch.int64, device=self.device)  # see step()
        if self.is_main:
            for path in remove_temp_files(self.out):
                log.info("removed %s, left by a write that was interrupted", path)
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

    def _speed_up(self) -> bool:
        """train.compile_backbone and train.cuda_graphs; returns whether parts of the step are graphed."""
        train = self.cfg.train
        if train.compile_backbone:
            # the backbone alone: its shapes vary only with the padded batch size, while the
            # heads' data-dependent shapes (proposals, sampled RoIs) would recompile
            self.model.backbone.compile(dynamic=True)
        graphs = cuda_graphs_mode(train.cuda_graphs)
        if graphs == "auto":
            if self.device.type != "cuda":
                return False
            if train.compile_backbone or self.distiller is not None:
                log.info("train.cuda_graphs=auto: eager, since %s", "train.compile_backbone is on"
                         if train.compile_backbone else "distillation reads features through hooks a graph skips")
                return False
            try:
                return enable_cuda_graphs(self.model, train.cuda_graph_shapes, self.device,
                                          heads=train.cuda_graph_heads)
            except UserError as e:  # a model the capture would run wrongly (SyncBN): eager
                log.info("train.cuda_graphs=auto: eager, since %s", e)
                return False
        if graphs:
            if train.compile_backbone or self.distiller is not None:
                raise UserError("train.cuda_graphs does not combine with "
                                + ("train.compile_backbone" if train.compile_backbone else
                                   "distillation (it reads the student's features through hooks a graph skips)"))
            return enable_cuda_graphs(self.model, train.cuda_graph_shapes, self.device, heads=train.cuda_graph_heads)
        return False

    def _open_val(self):
        """data.val, for evaluation during training: opened at the start, so that a mistake in it
        stops the run before the first step rather than at the first evaluation."""
        val = open_dataset(self.cfg.data.val, train=False, key="data.val")
        # the same classes, matched by name (train and val may come in different formats)
        model_label_to_category_id(self.cfg, val, self.dataset.category_names)
        return val

    # ------------------------------------------------------------ checkpoints
    def _resume(self) -> None:
        last = self.out / LAST_FILE
        if not last.exists():
            log.warning("--resume: no checkpoint in %s, starting from scratch", self.out)
            return
        weights = self.out / last.read_text().strip()
        for path in (weights, state_path(weights)):
            if not path.is_file():
                raise UserError(f"{last} names {weights.name}, but {path} is missing")
        load_weights(self.model, weights)
        state = read_training_state(state_path(weights))
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
        self.batches_done = state.get("batches", self.start_iter)
        self._resume_loop_state(state, weights)
        log.info("resuming from %s (iteration %d)", weights, self.start_iter)

    def _resume_loop_state(self, state: dict, weights: Path) -> None:
        """The average of the weights and the best evaluation so far, from a checkpoint's state."""
        if "trained_weights" in state:  # saved with an average: `weights` holds it, the state what trained
            if self.ema is not None:
                self.ema.load(self.model.state_dict(), state["ema_updates"])
            self.model.load_state_dict(state["trained_weights"])
        elif self.ema is not None:
            self.ema.load(self.model.state_dict(), 0)
            log.info("train.ema_decay: %s holds no average of the weights; it starts from them", weights)
        best = state.get("best")
        if best is not None and best["metric"] != self.cfg.train.best_metric:
            log.info("train.best_metric is %s, the checkpoint's best was by %s: the best model is chosen afresh",
                     self.cfg.train.best_metric, best["metric"])
            best = None
        self.best = best
        self.evals_since_best = state.get("evals_since_best", 0) if best is not None else 0

    def save_checkpoint(self, iteration: int, final: bool = False) -> None:
        """Collective under DDP: every rank calls it (its RNG state is gathered), rank 0 writes,
        and every rank waits for rank 0's outcome: a write that failed stops them all with its
        message."""
        rngs = dist_utils.gather_objects(rng_state()) if self.world_size > 1 else None
        failure = None
        if self.is_main:
            try:
                self._write_checkpoint(iteration, final, rngs)
            except UserError as e:
                failure = f"{e}; the checkpoint of iteration {iteration} was not written: {self.newest_checkpoint()}"
        failure = dist_utils.broadcast_object(failure)
        if failure is not None:
            raise UserError(failure)

    def weights_to_save(self) -> torch.nn.Module:
        """What the weights files hold and evaluation scores: the average with train.ema_decay."""
        return self.ema.module if self.ema is not None else self.model

    def _weights_meta(self, iteration: int) -> dict:
        """The JSON beside a weights file: what `eval` and `predict` need besides the weights."""
        return {"iteration": iteration, "config": to_dict(self.cfg),
                "categories": self.dataset.category_names, "category_ids": self.dataset.category_ids}

    def _write_checkpoint(self, iteration: int, final: bool, rngs: list[dict] | None) -> None:
        """Weights, their JSON, the training state, then the commit: last_checkpoint names them."""
        weights = self.out / (FINAL_FILE if final else f"model_{iteration:07d}.safetensors")
        save_weights(self.weights_to_save(), weights, self._weights_meta(iteration))
        state = {"iteration": iteration, "optimizer": self.optimizer.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": rng_state(), "batches": self.batches_done,
                 "best": self.best, "evals_since_best": self.evals_since_best}
        if self.ema is not None:  # the weights file holds the average; training goes on from these
            state["trained_weights"] = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            state["ema_updates"] = self.ema.updates
        if rngs is not None:
            state["rng_ranks"] = rngs
        if self.distiller is not None:
            state["distill_adapters"] = self.distiller.adapters.state_dict()
        atomic_torch_save(state, state_path(weights))
        atomic_write_text(self.out / LAST_FILE, weights.name + "\n")  # the commit point
        self._prune(keep=self.cfg.train.keep_checkpoints, current=weights)

    def _prune(self, keep: int, current: Path) -> None:
        """Deletes all but the newest `keep` numbered checkpoints (0: keeps all), never `current`."""
        numbered = sorted({path.name.split(".")[0] for path in self.out.glob("model_[0-9]*")})
        for stem in numbered[:-keep] if keep > 0 else []:
            weights = self.out / f"{stem}.safetensors"
            if weights != current:
                for path in (state_path(weights), weights.with_suffix(".json"), weights):
                    path.unlink(missing_ok=True)

    def newest_checkpoint(self) -> str:
        """Where a stopped run can go on from, in words."""
        last = self.out / LAST_FILE
        if last.exists():
            return f"the newest checkpoint is {self.out / last.read_text().strip()} (--resume continues from it)"
        return (f"no checkpoint has been written yet (train.checkpoint_every={self.cfg.train.checkpoint_every} "
                "sets how often one is)")

    # ------------------------------------------------------------ one step
    def _to_device(self, images: list[torch.Tensor], targets: list[dict]) -> tuple[list[torch.Tensor], list[dict]]:
        """The batch on the device, its labels mapped to the model's. The targets are checked
        against the model's input rules here, on the CPU, which the model then skips
        (check_input_values): a bad one is named by its record, and no step waits for the device."""
        mapped = [{**t, "labels": self.labels(t["labels"])} for t in targets]
        try:
            check_targets(mapped, images, masks=self.model.trains_on_masks)
            check_values((), mapped, self.cfg.model.num_classes,
                         names=[f"{self.dataset.ann_file}: image id {t['image_id']}" for t in mapped])
        except (TypeError, ValueError) as e:
            raise UserError(str(e)) from None
        images = [img.to(self.device, non_blocking=True) for img in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items() if isinstance(v, torch.Tensor)}
                   for t in mapped]
        return images, targets

    def step(self, iteration: int, batches: list[tuple[list[torch.Tensor], list[dict]]]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimizer step over train.accumulate micro-batches: each one's forward under autocast
        and backward, its loss divided by their number so that the gradients add up to their mean;
        then clipping and the update, once. Returns the loss and its parts averaged over the
        micro-batches, without waiting for the device."""
        cfg = self.cfg.train
        lr = self.base_lr * lr_factor(iteration, cfg.warmup_iters, cfg.warmup_factor, cfg.steps, cfg.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        # to None, not zeroed: with train.cuda_graphs a .grad may alias a graph's static gradient
        # buffer, which the next replay overwrites and would then add to itself
        self.optimizer.zero_grad(set_to_none=True)
        count = len(batches)
        micro_losses: list[dict[str, torch.Tensor]] = []  # each micro-batch's loss parts, detached
        for index, (images, targets) in enumerate(batches):
            last = index == count - 1
            images, targets = self._to_device(images, targets)
            # under DDP the gradients are all-reduced once, in the last micro-batch's backward
            no_sync = self.ddp_model.no_sync() if self.world_size > 1 and not last else contextlib.nullcontext()
            with no_sync:
                with autocast(self.device, self.amp_dtype):
                    losses = self.ddp_model(images, targets)
                    if self.distiller is not None:
                        losses["loss_distill"] = self.distiller.loss()
                loss = sum(losses.values())
                # the first iteration whose loss was not finite (-1: none), kept on the device and read
                # at log and checkpoint steps only, so that no step waits for the device to check it
                bad = ~torch.isfinite(loss.detach())
                self.first_bad = torch.where(bad & (self.first_bad < 0), iteration, self.first_bad)  # no copy
                self.scaler.scale(loss if count == 1 else loss / count).backward()
            if self.graphed and not last:
                # the next replay would overwrite a gradient that aliases a graph's buffer before
                # autograd adds its own to it: from here on each .grad is a tensor of its own
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad = p.grad.clone()
            micro_losses.append({"loss": loss.detach(), **{name: value.detach() for name, value in losses.items()}})
        if self.distiller is not None:
            dist_utils.average_gradients(self.distiller)  # DDP averages the model's only
        if cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad_norm)
        self.scaler.step(self.optimizer)
        if self.scaler.is_enabled():
            # fp16: the scaler skips the update when the gradients overflowed and then lowers its
            # scale, which is the only way it changes downwards. The step is counted on the device
            # and read at log steps (the scale tensor is private; get_scale() would wait for the device).
            scale = self.scaler._scale.clone()
            self.scaler.update()
            self.skipped_steps += self.scaler._scale < scale
        if self.ema is not None:
            self.ema.update(self.model)
        # one micro-batch (the default) adds no kernel to the step; several are averaged
        mean = micro_losses[0] if count == 1 else {name: sum(m[name] for m in micro_losses) / count
                                                   for name in micro_losses[0]}
        total = mean.pop("loss")
        return total, mean

    def _stop_if_diverged(self, done: int) -> None:
        """Reads the non-finite check and the loss scale (a wait for the device): every rank stops
        if any saw a bad loss, or when fp16's dynamic loss scale fell below 1."""
        dist_utils.all_reduce_max_(self.first_bad)
        if int(self.first_bad) >= 0:
            raise UserError(f"loss is not finite at iteration {int(self.first_bad) + 1}; training stopped "
                            f"(lower train.lr or set train.clip_grad_norm): {self.newest_checkpoint()}")
        if self.scaler.is_enabled() and self.scaler.get_scale() < 1:
            raise UserError(f"the fp16 loss scale fell to {self.scaler.get_scale():g} by iteration {done}: the "
                            "gradients overflow fp16 even unscaled, so every update is skipped; training stopped "
                            "(train in bfloat16 with train.amp_dtype=bfloat16 or in fp32 with train.amp=false, or "
                            f"lower train.lr): {self.newest_checkpoint()}")

    # ------------------------------------------------------------ the loop
    def train(self) -> Path:
        cfg = self.cfg.train
        if self._patience_spent():
            return self.out / FINAL_FILE
        self.model.train()
        if self.distiller is not None:
            self.distiller.train()
        loader = build_train_loader(self.dataset, cfg.batch_size, self.cfg.data.num_workers, cfg.seed,
                                    start_iter=self.batches_done, num_replicas=self.world_size, rank=self.rank,
                                    pin_memory=self.device.type == "cuda", scale_jitter=self.cfg.data.scale_jitter,
                                    rand_resize_crop=self.cfg.data.rand_resize_crop)
        batches = iter(loader)
        metrics = MetricsLog(self.out / "metrics.jsonl", self.world_size, self.start_iter) if self.is_main else None
        board = TensorBoardLog(self.out / "tensorboard", self.start_iter) if self.is_main and cfg.tensorboard else None
        bar = tqdm(total=cfg.max_iter, initial=self.start_iter, desc="train", dynamic_ncols=True,
                   mininterval=1.0, disable=not self.is_main)
        try:
            for iteration in range(self.start_iter, cfg.max_iter):
                micro_batches = [self._next_batch(batches, iteration) for _ in range(self.accumulate)]
                loss, losses = self.step(iteration, micro_batches)
                self.batches_done += len(micro_batches)

                done = iteration + 1
                is_log = done % cfg.log_every == 0 or done == cfg.max_iter
                is_checkpoint = done % cfg.checkpoint_every == 0 or done == cfg.max_iter
                is_eval = cfg.eval_every > 0 and (done % cfg.eval_every == 0 or done == cfg.max_iter)
                if is_log or is_checkpoint or is_eval:
                    self._stop_if_diverged(done)
                images_done = sum(len(images) for images, _ in micro_batches)
                if is_log:
                    record = self._log_record(done, loss, losses)
                    if metrics is not None:
                        record = metrics.write(record, images_done)
                        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2g}",
                                        img_s=f"{record['images_per_s']:.1f}")
                    if board is not None:
                        board.log_step(record)
                elif metrics is not None:
                    metrics.count(images_done)
                stop = is_eval and self.evaluate(done, metrics, board)
                if is_checkpoint or stop:
                    self.save_checkpoint(done, final=done == cfg.max_iter or stop)
                    if board is not None:
                        board.flush()  # the events up to a checkpoint are on disk with it
                bar.update(1)
                if stop:
                    break
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
            if board is not None:
                board.close()
        return self.out / FINAL_FILE

    def _next_batch(self, batches, iteration: int) -> tuple[list[torch.Tensor], list[dict]]:
        try:
            return next(batches)
        except UserError as e:  # an unreadable image
            raise UserError(f"{e}; training stopped at iteration {iteration + 1}: {self.newest_checkpoint()}") from None

    # ------------------------------------------------------------ evaluation during training
    def evaluate(self, done: int, metrics: "MetricsLog | None", board: TensorBoardLog | None) -> bool:
        """Scores the weights (the average with train.ema_decay) on data.val, records the stats and
        keeps the best weights; returns whether train.patience has run out. Collective under DDP:
        every rank runs its shard of the images, rank 0 scores and writes, and every rank gets its
        decision (or its failure to write)."""
        model = self.weights_to_save()
        started = time.perf_counter()
        # evaluation draws nothing from training's random streams, and cuDNN does not time its
        # algorithms for the many shapes of one pass (as `simpledet eval`)
        rngs, benchmark = rng_state(), torch.backends.cudnn.benchmark
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
        try:
            if self.world_size > 1 and has_per_rank_statistics(model):
                for buffer in model.buffers():  # every rank scores rank 0's BatchNorm statistics, which are saved
                    torch.distributed.broadcast(buffer, 0)
            result = evaluate_model(model, self.cfg, self.val_dataset, self.device, show_progress=False,
                                    model_categories=self.dataset.category_names)
        finally:
            torch.backends.cudnn.benchmark = benchmark
            set_rng_state(rngs)
            self.model.train()
        failure, stop = None, False
        if result is not None:  # rank 0
            try:
                stop = self._record_evaluation(done, result, metrics, board, time.perf_counter() - started)
            except UserError as e:
                failure = f"{e}; training stopped at iteration {done}: {self.newest_checkpoint()}"
        failure, stop, self.best, self.evals_since_best = dist_utils.broadcast_object(
            (failure, stop, self.best, self.evals_since_best))
        if failure is not None:
            raise UserError(failure)
        return stop

    def _record_evaluation(self, done: int, result: ModelEvaluation, metrics: "MetricsLog | None",
                           board: TensorBoardLog | None, seconds: float) -> bool:
        cfg = self.cfg.train
        stats = dict(result.stats)
        if metrics is not None:
            metrics.write_evaluation({"iteration": done, "eval": stats}, seconds)
        if board is not None:
            board.log_evaluation(done, stats, self.val_dataset, result.detections)
        value = stats[cfg.best_metric]
        if self.best is None and value < 0:
            log.warning("train.best_metric=%s is -1 on %s: no ground truth there falls in its slice, so it "
                        "cannot improve; choose another of %s", cfg.best_metric, self.val_dataset.ann_file,
                        ", ".join(stats))
        if self.best is None or improves(cfg.best_metric, value, self.best["value"]):
            self.best = {"metric": cfg.best_metric, "value": value, "iteration": done}
            self.evals_since_best = 0
            save_weights(self.weights_to_save(), self.out / BEST_FILE, {**self._weights_meta(done), **self.best})
        else:
            self.evals_since_best += 1
        log.info("iteration %d: %s %.4f on data.val (best %.4f, at iteration %d)", done, cfg.best_metric, value,
                 self.best["value"], self.best["iteration"])
        return self._patience_exhausted(done)

    def _patience_exhausted(self, done: int) -> bool:
        patience = self.cfg.train.patience
        if not patience or self.evals_since_best < patience:
            return False
        log.info("stopping early at iteration %d: %s has not improved for %d evaluation%s (train.patience=%d); "
                 "the best, %.4f at iteration %d, is in %s", done, self.best["metric"], self.evals_since_best,
                 "" if self.evals_since_best == 1 else "s", patience, self.best["value"], self.best["iteration"],
                 self.out / BEST_FILE)
        return True

    def _patience_spent(self) -> bool:
        """A resumed run that had stopped early (or whose train.patience is now lower) trains no
        further; it makes sure model_final is there."""
        if not self.cfg.train.patience or self.evals_since_best < self.cfg.train.patience:
            return False
        self._patience_exhausted(self.start_iter)
        if (self.out / LAST_FILE).read_text().strip() != FINAL_FILE:
            self.save_checkpoint(self.start_iter, final=True)
        return True

    def _log_record(self, done: int, loss: torch.Tensor, losses: dict[str, torch.Tensor]) -> dict:
        """The metrics of a log step: "loss" is the mean over ranks, its parts rank 0's."""
        total = loss.detach()
        if self.world_size > 1:
            total = dist_utils.all_reduce_mean_(total.float().clone())
        record = {"iteration": done, "lr": self.optimizer.param_groups[0]["lr"], "loss": float(total),
                  **{k: float(v.detach()) for k, v in losses.items()}}
        if self.scaler.is_enabled():  # fp16: the loss scale, and the updates skipped since the last log step
            record["loss_scale"] = self.scaler.get_scale()
            record["skipped_steps"] = int(self.skipped_steps)
            self.skipped_steps.zero_()
        return record


class MetricsLog:
    """metrics.jsonl: one JSON line a log step, with the images per second since the last one, and
    one an evaluation ({"iteration": i, "eval": {the 12 COCO stats}}).

    Opened for a run that starts at `start_iter`, it first drops the lines of later iterations
    (a resumed run writes them again) and a last line that a kill cut short."""

    def __init__(self, path: Path, world_size: int, start_iter: int) -> None:
        self.path = path
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if _iteration_of(line) <= start_iter]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        try:
            self.file = open(path, "a")
        except OSError as e:
            raise write_error(path, e) from None
        self.world_size = world_size
        self.window_start, self.window_images = time.perf_counter(), 0

    def count(self, images: int) -> None:
        self.window_images += images

    def write(self, record: dict, images: int) -> dict:
        self.count(images)
        elapsed = time.perf_counter() - self.window_start
        record = {**record, "images_per_s": self.window_images * self.world_size / max(elapsed, 1e-9)}
        self._append(record)
        self.window_start, self.window_images = time.perf_counter(), 0
        return record

    def write_evaluation(self, record: dict, seconds: float) -> None:
        """An evaluation's line; the `seconds` it took do not count against training's images per second."""
        self._append(record)
        self.window_start += seconds

    def _append(self, record: dict) -> None:
        try:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        except OSError as e:
            raise write_error(self.path, e) from None

    def close(self) -> None:
        # every line was flushed when written: a failure here can only repeat one write() reported
        with contextlib.suppress(OSError):
            self.file.close()


def _iteration_of(line: str) -> int:
    """The iteration of a metrics.jsonl line; a line cut short counts as past every iteration."""
    try:
        return int(json.loads(line)["iteration"])
    except (ValueError, KeyError, TypeError):
        return sys.maxsize


def metric_names(cfg: Config) -> tuple[str, ...]:
    """What evaluation reports for this model: COCO's 12 box stats, an RPN's proposal recall, or
    CrowdHuman's AP and MR^-2."""
    if cfg.model.proposals_only:
        return AR_NAMES
    return CROWDHUMAN_NAMES if cfg.model.crowdhuman_metrics else STAT_NAMES


LOWER_IS_BETTER = {"MR"}  # CrowdHuman's log-average miss rate; every other metric is a precision or recall


def improves(metric: str, value: float, best: float) -> bool:
    """Whether `value` of `metric` beats the best so far (a miss rate improves downwards)."""
    return value < best if metric in LOWER_IS_BETTER else value > best


def check_loop_settings(train: TrainConfig, names: tuple[str, ...] = STAT_NAMES) -> None:
    """The training loop's settings, checked before anything is written."""
    if train.best_metric not in names:
        raise UserError(f"train.best_metric: unknown metric {train.best_metric!r}; choose one of "
                        f"{', '.join(names)}")
    for key in ("eval_every", "patience"):
        if getattr(train, key) < 0:
            raise UserError(f"train.{key} must be 0 (off) or more, got {getattr(train, key)}")
    if train.patience and not train.eval_every:
        raise UserError(f"train.patience={train.patience} counts evaluations, but train.eval_every is 0 (no "
                        "evaluation during training): set train.eval_every as well")
    if train.accumulate < 1:
        raise UserError(f"train.accumulate must be 1 or more (micro-batches per step), got {train.accumulate}")
    if not 0.0 <= train.ema_decay < 1.0:
        raise UserError(f"train.ema_decay must be in [0, 1) (0: off; 0.9998 is YOLOX's), got {train.ema_decay}")
    cuda_graphs_mode(train.cuda_graphs)


def cuda_graphs_mode(value: bool | str) -> bool | str:
    """train.cuda_graphs as True, False or "auto" (a config file may spell any of them as a string)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    try:
        return parse_value(text, bool)
    except ValueError:
        raise UserError(f"train.cuda_graphs must be true, false or auto, got {value!r}") from None


def refuse_frozen_bn_without_weights(cfg: Config, model: torch.nn.Module) -> None:
    """Frozen BatchNorm keeps the statistics it is given. With nothing pretrained those are a
    fresh layer's (mean 0, variance 1): no normalisation at all, and activations that grow layer
    after layer until fp16 overflows. torchvision swaps in trainable BN when no backbone weights
    are given; we stop instead, so that the config saved with the run is the one that trained."""
    if cfg.model.backbone.pretrained or cfg.train.init_from:
        return
    frozen = [name for name, m in model.named_modules() if isinstance(m, FrozenBatchNorm2d)]
    if frozen:
        raise UserError(f"model.backbone.norm is frozen_bn ({len(frozen)} frozen BatchNorm layers, the first "
                        f"{frozen[0]}) but model.backbone.pretrained is None: frozen BatchNorm would keep a fresh "
                        "layer's statistics and not normalise at all. Give the pretrained weights "
                        "(model.backbone.pretrained=PATH, or train.init_from=CHECKPOINT), or train the backbone "
                        "from scratch with "
                        "model.backbone.norm=bn (syncbn or gn across processes) and model.backbone.freeze_at=0")


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
