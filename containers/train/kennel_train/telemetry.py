"""Step telemetry cheap enough to leave on: what the loop measures, and when it reads it.

    telemetry = Telemetry(net, optimizer, config, dist)
    for images, labels, _ in loader:
        measured = telemetry.begin_step(data_wait_seconds)    # every step: a clock mark, nothing else
        ... forward, backward ...
        telemetry.backward_done()
        if measured: scaler.unscale_(optimizer); telemetry.gradients()   # every N steps
        ... optimizer step ...
        reading = telemetry.end_step(loss, len(labels))       # a dict every N steps, else None

Every step adds its loss to a tensor on the device and records clock marks (CUDA events on a GPU, so
nothing waits for the GPU); every `telemetry_every` steps the step's gradient and update norms per layer
group are computed on the device, and one `.tolist()` reads the window back: one GPU sync per N steps.
The first step of a fresh run also records activation statistics per layer group (forward hooks).

Layer groups: the stem, each stage, the head (ResNet: conv1+bn1, layer1..layer4, fc; MobileNetV3: the
first block, each run of blocks between two stride-2 blocks, the classifier).
"""

import math
import time
from typing import Any

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext


def layer_groups(net: nn.Module) -> dict[str, list[nn.Module]]:
    """Named groups of modules, input to output: stem, stage1..stageN, head."""
    if hasattr(net, "layer1"):  # ResNet
        stages = [name for name in ("layer1", "layer2", "layer3", "layer4") if hasattr(net, name)]
        groups = {"stem": [net.conv1, net.bn1, net.relu, net.maxpool]}
        groups |= {f"stage{i + 1}": [getattr(net, name)] for i, name in enumerate(stages)}
        return groups | {"head": [net.fc]}
    if hasattr(net, "features") and hasattr(net, "classifier"):  # MobileNetV3
        blocks = list(net.features)
        groups = {"stem": [blocks[0]]}
        stage: list[nn.Module] = []
        for block in blocks[1:]:
            if getattr(block, "_is_cn", False) and stage:  # a stride-2 block starts a new stage
                groups[f"stage{len(groups)}"] = stage
                stage = []
            stage.append(block)
        groups[f"stage{len(groups)}"] = stage
        return groups | {"head": [net.avgpool, net.classifier]}
    return {name: [module] for name, module in net.named_children()}


class StepClock:
    """Marks on the device's timeline: CUDA events (recorded, read only after a sync) or the CPU clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000 if self.cuda else end - start


def timed_allreduce(
    telemetry: "Telemetry", bucket: torch.distributed.GradBucket
) -> torch.futures.Future[torch.Tensor]:
    """DDP's own all-reduce, with a clock mark when each bucket is ready: the last mark is where the
    local backward ended, so from there to the end of backward is time spent waiting for other ranks."""
    telemetry.last_bucket = telemetry.clock.mark()
    return default_hooks.allreduce_hook(None, bucket)


class Telemetry:
    """Collects step readings for one process; `history` holds them, `activations` the first step's."""

    def __init__(
        self, net: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, dist: DistContext
    ) -> None:
        self.every = config.telemetry_every
        self.optimizer = optimizer
        self.device = dist.device
        self.clock = StepClock(dist.device)
        self.groups = layer_groups(net)
        self.parameters = {
            name: [p for module in modules for p in module.parameters(recurse=True) if p.requires_grad]
            for name, modules in self.groups.items()
        }
        self.trained = [name for name, params in self.parameters.items() if params]
        self.history: list[dict[str, float]] = []
        self.activations: dict[str, dict[str, float]] = {}
        self.step = 0  # global, across epochs and resumes
        self.epoch = 0
        self.started = time.time()
        self.elapsed_before = 0.0  # seconds of earlier runs of this job (before a resume)
        self.last_bucket: Any = None
        self.before: dict[str, list[torch.Tensor]] = {}
        self._hooks: list[Any] = []
        self._reset_window()

    # The run's time axis: seconds since the job first started, across resumes.
    def seconds(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def _reset_window(self) -> None:
        self.window_started = time.perf_counter()
        self.window_steps = 0
        self.window_images = 0
        self.window_wait = 0.0
        self.marks: list[tuple[Any, Any, Any, Any]] = []
        self.losses = torch.zeros(2, dtype=torch.float64, device=self.device)  # sum, non-finite count
        self.measured: dict[str, torch.Tensor] = {}

    def epoch_started(self, epoch: int) -> None:
        self.epoch = epoch
        self.epoch_wait = 0.0  # data wait after the epoch's first batch
        self.first_wait = 0.0  # the first batch: worker start-up and prefetch, not a steady-state cost
        self.epoch_started_at = time.perf_counter()
        self.epoch_first_step = self.step
        self._reset_window()

    def watch_activations(self) -> None:
        """Forward hooks that record each group's output statistics at the next forward pass only."""
        for name, modules in self.groups.items():
            self._hooks.append(modules[-1].register_forward_hook(self._activation_hook(name)))

    def _activation_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if name in self.activations or not isinstance(output, torch.Tensor):
                return
            values = output.detach().float()
            stats = torch.stack([values.mean(), values.std(), (values == 0).float().mean()])
            self.activations[name] = {
                k: float(v) for k, v in zip(("mean", "std", "zero_fraction"), stats.tolist(), strict=True)
            }
            if len(self.activations) == len(self.groups):
                for handle in self._hooks:
                    handle.remove()

        return hook

    def begin_step(self, data_wait: float) -> bool:
        """A batch arrived after `data_wait` seconds. Returns whether this step's gradients are measured."""
        if self.step == self.epoch_first_step:
            self.first_wait = data_wait
        else:
            self.epoch_wait += data_wait
        self.window_wait += data_wait
        self.last_bucket = None
        self.step_start = self.clock.mark()
        return self.every > 0 and self.step % self.every == 0

    def backward_done(self) -> None:
        self.backward_end = self.clock.mark()
        self.bucket_ready = self.last_bucket or self.backward_end

    @torch.no_grad()
    def gradients(self) -> None:
        """Per-group gradient norms (the caller has unscaled them), and a copy of the weights so that
        end_step can measure the update."""
        for name in self.trained:
            params = self.parameters[name]
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else None
            count = sum(p.numel() for p in params)
            zero = torch.zeros((), device=self.device)
            self.measured[f"grad_norm/{name}"] = zero if norm is None else norm.float()
            self.measured[f"grad_rms/{name}"] = self.measured[f"grad_norm/{name}"] / math.sqrt(count)
        self.before = {name: [p.detach().clone() for p in self.parameters[name]] for name in self.trained}

    @torch.no_grad()
    def _updates(self) -> None:
        for name, before in self.before.items():
            after = [p.detach() for p in self.parameters[name]]
            weight = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(before)))
            change = torch.linalg.vector_norm(
                torch.stack(torch._foreach_norm(torch._foreach_sub(after, before)))
            )
            self.measured[f"update_ratio/{name}"] = (change / weight.clamp_min(1e-12)).float()
        norms = [self.measured[f"grad_norm/{name}"] for name in self.trained]
        self.measured["grad_norm"] = torch.linalg.vector_norm(torch.stack(norms)).float()
        self.before = {}

    def end_step(self, loss: torch.Tensor, images: int) -> dict[str, float] | None:
        """After the optimizer step. Returns a reading at each measured step, else None; reading is the
        only GPU sync telemetry causes (`read()` at the epoch's end takes the rest of the window)."""
        optimizer_end = self.clock.mark()
        self.marks.append((self.step_start, self.bucket_ready, self.backward_end, optimizer_end))
        with torch.no_grad():
            loss = loss.detach().double()
            self.losses += torch.stack([torch.nan_to_num(loss, 0.0, 0.0, 0.0), (~loss.isfinite()).double()])
        measured = bool(self.before)
        if measured:
            self._updates()
        self.window_steps += 1
        self.window_images += images
        self.step += 1
        if not measured:
            return None
        return self.read()

    def read(self) -> dict[str, float] | None:
        if not self.window_steps:
            return None
        names = list(self.measured)
        values = (
            torch.cat([self.losses.float(), torch.stack(list(self.measured.values())).float()])
            if names
            else self.losses
        )
        figures = values.tolist()  # the one sync: everything recorded above is done after it
        loss_sum, nonfinite = figures[0], figures[1]
        wall = time.perf_counter() - self.window_started
        steps = self.window_steps
        split = {"forward_backward": 0.0, "allreduce_wait": 0.0, "optimizer": 0.0}
        for start, bucket, backward, end in self.marks:
            split["forward_backward"] += self.clock.seconds(start, bucket)
            split["allreduce_wait"] += self.clock.seconds(bucket, backward)
            split["optimizer"] += self.clock.seconds(backward, end)
        finite = steps - nonfinite
        reading = {
            "step": self.step,
            "epoch": self.epoch + 1,
            "seconds": self.seconds(),
            "loss": loss_sum / finite if finite else math.nan,
            "nonfinite_losses": nonfinite,
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_second": self.window_images / wall if wall > 0 else math.nan,
            "data_wait": self.window_wait / steps,
            **{name: value / steps for name, value in split.items()},
            **dict(zip(names, figures[2:], strict=True)),
        }
        self.history.append(reading)
        self._reset_window()
        return reading

    def epoch_timing(self) -> dict[str, float]:
        """The epoch's training wall time and the share of it spent waiting for data (the first batch,
        the workers' start, left out)."""
        wall = time.perf_counter() - self.epoch_started_at - self.first_wait
        return {
            "train_seconds": wall + self.first_wait,
            "data_wait_share": self.epoch_wait / wall if wall > 0 else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "activations": dict(self.activations),
            "step": self.step,
            "seconds": self.seconds(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.activations = dict(state["activations"])
        self.step = state["step"]
        self.elapsed_before = state["seconds"]
        self.started = time.time()
