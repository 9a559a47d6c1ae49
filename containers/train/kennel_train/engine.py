"""The training loop: one code path for one CPU process and for many GPUs on many hosts.

`main(config, dist)` never reads the environment: everything comes from the frozen config and the
DistContext.
"""

import contextlib
import copy
import dataclasses
import logging
import math
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from kennel_train import checkpoint, data, metrics, package, report
from kennel_train import model as models
from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext
from kennel_train.insight import Insight, best_weights
from kennel_train.rules import RuleStopped
from kennel_train.telemetry import Telemetry, timed_allreduce

log = logging.getLogger(__name__)


class StopRequested:
    """Set by SIGTERM (docker stop, StopTrainingJob, a spot interruption); polled between steps."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        log.warning("SIGTERM: stopping after this step and saving a checkpoint")
        self.requested = True


def any_rank(dist: DistContext, *flags: bool) -> list[bool]:
    """For each flag, whether any rank raised it. Ranks must leave the loop or skip a step together: a
    rank that did either alone would leave the others waiting in their next all-reduce."""
    if not dist.distributed:
        return list(flags)
    tensor = torch.tensor([float(flag) for flag in flags], device=dist.device)
    torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


class Stopped(Exception):
    """Training stopped on SIGTERM after saving a checkpoint."""


def amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "fp16" or (config.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def to_device(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device, memory_format: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    # non_blocking: with pinned memory the copy overlaps the previous step's work on the GPU.
    images = images.to(device, non_blocking=True, memory_format=memory_format)
    return images, labels.to(device, non_blocking=True)


def reduce_sums(values: list[float], dist: DistContext) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=dist.device)
    if dist.distributed:
        torch_dist.all_reduce(tensor)
    return tensor.tolist()


def ratios(loss_sum: float, correct: float, count: float, skipped: float) -> dict[str, float]:
    """Per-image mean loss and accuracy (not per batch: the last, smaller batch weighs what it holds)."""
    return {
        "loss": loss_sum / count if count else math.nan,
        "accuracy": correct / count if count else math.nan,
        "images": count,
        "skipped": skipped,
    }


def train_one_epoch(
    net: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    dist: DistContext,
    stop: StopRequested,
    insight: Insight,
) -> dict[str, float]:
    net.train()
    dtype = amp_dtype(config, dist.device)
    memory_format = torch.channels_last if channels_last(config, dist.device) else torch.preserve_format
    telemetry = insight.telemetry
    sums = torch.zeros(3, dtype=torch.float64, device=dist.device)  # loss * n, correct, n
    skipped = 0
    step_end = time.perf_counter()
    for images, labels, bad in loader:
        measured = telemetry.begin_step(time.perf_counter() - step_end)
        skipped += bad
        stop_now, some_batch_empty, rule_stop = any_rank(
            dist, stop.requested, len(labels) == 0, insight.stop is not None
        )
        if stop_now:
            raise Stopped
        if rule_stop:  # a rule with action `stop` fired at the last reading, here or on another rank
            insight.stop_or_fail()
        if some_batch_empty:  # a rank whose whole batch was unreadable: every rank skips this step
            step_end = time.perf_counter()
            continue
        images, labels = to_device(images, labels, dist.device, memory_format)
        with autocast(dist.device, dtype):
            logits = net(images)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        telemetry.backward_done()
        if config.clip_grad_norm > 0 or measured:
            # Clip and measure the true gradients: with fp16 they are still multiplied by the loss scale.
            scaler.unscale_(optimizer)
        if measured:
            telemetry.gradients()
        if config.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        reading = telemetry.end_step(loss, len(labels))
        if reading:
            insight.observe(reading)
        # Accumulated on the device: no per-step .item(), so the CPU does not wait for the GPU here.
        with torch.no_grad():
            sums += torch.stack(
                [
                    loss.detach().double() * len(labels),
                    (logits.argmax(1) == labels).sum().double(),
                    torch.tensor(len(labels), dtype=torch.float64, device=dist.device),
                ]
            )
        step_end = time.perf_counter()
    reading = telemetry.read()  # the rest of the epoch's last window
    if reading:
        insight.observe(reading)
    loss_sum, correct, count = sums.tolist()
    return ratios(*reduce_sums([loss_sum, correct, count, skipped], dist))


@torch.inference_mode()
def evaluate(
    net: nn.Module, loader: DataLoader, classes: int, config: TrainConfig, dist: DistContext
) -> dict[str, Any]:
    """Loss and accuracy over the split, and its confusion matrix (rows: true class, columns: predicted)."""
    net.eval()
    dtype = amp_dtype(config, dist.device)
    memory_format = torch.channels_last if channels_last(config, dist.device) else torch.preserve_format
    loss_sum = correct = count = skipped = 0.0
    confusion = torch.zeros(classes * classes, dtype=torch.long, device=dist.device)
    for images, labels, bad in loader:
        skipped += bad
        if len(labels) == 0:
            continue
        images, labels = to_device(images, labels, dist.device, memory_format)
        with autocast(dist.device, dtype):
            logits = net(images)
        # The loss in float32 and summed, so the mean over the split is exact whatever the batch sizes.
        loss_sum += nn.functional.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        count += len(labels)
        confusion += torch.bincount(labels * classes + logits.argmax(1), minlength=classes * classes)
    if dist.distributed:
        torch_dist.all_reduce(confusion)
    return {
        **ratios(*reduce_sums([loss_sum, correct, count, skipped], dist)),
        "confusion": confusion.view(classes, classes).tolist(),
    }


def channels_last(config: TrainConfig, device: torch.device) -> bool:
    return config.channels_last == "on" or (config.channels_last == "auto" and device.type == "cuda")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Linear warm-up, then cosine decay to zero, stepped once per batch."""
    total = max(config.epochs * steps_per_epoch, 1)
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = models.head_parameters(net) if config.freeze_backbone else list(net.parameters())
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def shared_checkpoint(config: TrainConfig, dist: DistContext) -> dict | None:
    """Rank 0's checkpoint, given to every rank: on several hosts only the first one has it."""
    state = checkpoint.load_checkpoint(config.checkpoint_dir) if config.resume and dist.is_main else None
    if dist.distributed:
        box = [state]
        torch_dist.broadcast_object_list(box, src=0)
        state = box[0]
    return state


def main(config: TrainConfig, dist: DistContext) -> dict[str, Any]:
    """Trains, evaluates and (rank 0) writes the model directory from the best validation epoch, with
    rules.json and the report. Returns the final metrics."""
    splits = data.find_splits(config)
    log.info(
        "data: %d classes; train %s, valid %s, test %s; %d process(es) on %s",
        len(splits.classes), splits.train, splits.valid, splits.test, dist.world_size, dist.device,
    )  # fmt: skip
    seed_everything(config.seed + dist.rank)
    loaders = data.make_loaders(config, dist, splits)
    classes = len(splits.classes)
    state = shared_checkpoint(config, dist)
    # Pretrained weights matter only on a fresh start: a checkpoint replaces them.
    backbone_state = models.pretrained_state(config) if state is None else None
    torch.manual_seed(config.seed)  # the same head on every rank
    net = models.build_model(config.backbone, classes, config.head, config.head_hidden, backbone_state)
    if config.freeze_backbone:
        head = set(map(id, models.head_parameters(net)))
        for parameter in net.parameters():
            parameter.requires_grad = id(parameter) in head
    net.to(dist.device)
    if channels_last(config, dist.device):
        net.to(memory_format=torch.channels_last)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    optimizer = make_optimizer(net, config)
    scheduler = make_schedule(optimizer, config, len(loaders["train"]))
    # A disabled scaler (CPU, bf16) passes every call through, so the loop has no AMP branches.
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp_dtype(config, dist.device) == torch.float16)
    insight = Insight(config, dist, Telemetry(net, optimizer, config, dist))
    start_epoch = 0
    best = None  # the best validation epoch's weights, on the CPU
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch = state["epoch"]
        if "insight" in state:  # checkpoints written before the rules had none
            insight.load_state_dict(state["insight"])
            best = state["best_model"]
        log.info("resuming from %s at epoch %d/%d", config.checkpoint_dir, start_epoch + 1, config.epochs)
    trained = DistributedDataParallel(net) if dist.distributed else net
    if dist.distributed:
        trained.register_comm_hook(insight.telemetry, timed_allreduce)
    stop = StopRequested()
    stop.install()

    def save(epoch: int, scheduler_state: dict, insight_state: dict) -> None:
        if dist.is_main:
            checkpoint.save_checkpoint(
                config.checkpoint_dir,
                {
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler_state,
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "config": dataclasses.asdict(config),
                    "insight": insight_state,
                    "best_model": best,
                },
            )

    insight.start(fresh=state is None)
    try:
        for epoch in range(start_epoch, config.epochs):
            if insight.ended:  # stopped early before a restart: nothing more to train
                break
            loaders["train"].sampler.set_epoch(epoch)
            # The schedule and the rules as they stood when this epoch began: an interrupted epoch is
            # repeated whole on resume.
            epoch_start_schedule = scheduler.state_dict()
            epoch_start_insight = copy.deepcopy(insight.state_dict())
            insight.telemetry.epoch_started(epoch)
            train_started = insight.telemetry.seconds()
            try:
                train = train_one_epoch(
                    trained, loaders["train"], criterion, optimizer, scheduler, scaler, config, dist, stop,
                    insight,
                )  # fmt: skip
            except Stopped:
                epoch_start_insight["telemetry"]["seconds"] = insight.telemetry.seconds()
                save(epoch, epoch_start_schedule, epoch_start_insight)
                log.warning(
                    "stopped during epoch %d; checkpoint saved in %s", epoch + 1, config.checkpoint_dir
                )
                raise
            timing = insight.telemetry.epoch_timing()
            train_ended = insight.telemetry.seconds()
            valid = evaluate(trained, loaders["valid"], classes, config, dist)
            lr = optimizer.param_groups[0]["lr"]
            record = {
                "epoch": epoch + 1,
                "train_loss": train["loss"],
                "train_accuracy": train["accuracy"],
                "validation_loss": valid["loss"],
                "validation_accuracy": valid["accuracy"],
                "lr": lr,
                "images_per_second": train["images"] / timing["train_seconds"],
                **timing,
                "seconds": insight.telemetry.seconds(),
            }
            if insight.epoch(record, train_started, train_ended):
                best = best_weights(net)
            (rule_stop,) = any_rank(dist, insight.stop is not None)
            try:
                if rule_stop:
                    insight.stop_or_fail()
                save(epoch + 1, scheduler.state_dict(), insight.state_dict())
            finally:
                # After its checkpoint: a run killed once this line is out resumes after this epoch.
                if dist.is_main:
                    print(
                        metrics.epoch_line(
                            epoch + 1, config.epochs, train, valid, lr, record["images_per_second"]
                        ),
                        flush=True,
                    )
            if train["skipped"] or valid["skipped"]:
                log.warning(
                    "skipped unreadable images: %d train, %d valid", train["skipped"], valid["skipped"]
                )
            if insight.ended:
                log.warning("%s", insight.ended)
                break
        results = finish(net, trained, best, insight, loaders, splits, config, dist)
    except RuleStopped as stopped:
        insight.ended = f"failed: {stopped}"
        if dist.is_main:
            for path in insight.write(
                {"config": dataclasses.asdict(config), "classes": splits.classes}, None
            ):
                log.info("report written to %s", path)
        raise
    finally:
        insight.close()
    return results


def finish(
    net: nn.Module,
    trained: nn.Module,
    best: dict | None,
    insight: Insight,
    loaders: dict[str, DataLoader],
    splits: data.Splits,
    config: TrainConfig,
    dist: DistContext,
) -> dict[str, Any]:
    """The best epoch's weights, evaluated on the test split, into the model directory with the report."""
    classes = len(splits.classes)
    if best is not None:
        net.load_state_dict(best)
    best_record = insight.rules.best
    valid = (
        {"loss": best_record["validation_loss"], "accuracy": best_record["validation_accuracy"]}
        if best_record
        else evaluate(trained, loaders["valid"], classes, config, dist)  # a checkpoint from before the rules
    )
    test = evaluate(trained, loaders["test"], classes, config, dist)
    if test["skipped"]:
        log.warning("skipped unreadable images: %d test", test["skipped"])
    results = {
        "val_accuracy": valid["accuracy"],
        "val_loss": valid["loss"],
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "epochs": config.epochs,
        "best_epoch": int(best_record["epoch"]) if best_record else config.epochs,
        "epochs_trained": len(insight.rules.epochs),
        "ended": insight.ended or "completed all epochs",
    }
    if not dist.is_main:
        return results
    print(metrics.test_line(test), flush=True)
    log.info("model from epoch %d (best validation accuracy); %s", results["best_epoch"], results["ended"])
    thumbnails = report.confusion_thumbnails(net, splits, config, test["confusion"], dist.device)
    package.write(config, net, splits, results)
    details = {
        "config": dataclasses.asdict(config),
        "classes": splits.classes,
        "metrics": results,
        "test": {"confusion": test["confusion"], "thumbnails": thumbnails},
        "world_size": dist.world_size,
        "device": str(dist.device),
    }
    for path in insight.write(details, Path(config.model_dir)):
        log.info("report written to %s", path)
    return results
