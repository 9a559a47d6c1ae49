"""What a run says about itself: telemetry readings and epochs go to the rules, the log, TensorBoard,
and at the end rules.json and the HTML report (OUTPUT_DIR/data and the model directory).

    insight = Insight(config, dist, Telemetry(net, optimizer, config, dist))
    insight.observe(reading)          # from the training loop, every N steps
    best = insight.epoch(record)      # after each validation
    insight.write(test_results)       # rank 0, at the end (or with the failure)

Every rank keeps the same best epoch (its inputs are reduced over ranks); only rank 0 samples the
system, logs findings and writes files. A rule's `stop` is shared by `share_stop`, which every rank calls
when any rank asked for it.
"""

import json
import logging
import os
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist

from kennel_train import report
from kennel_train.config import TrainConfig
from kennel_train.dist import DistContext
from kennel_train.rules import Finding, Rules, RuleStopped
from kennel_train.system import SystemSampler
from kennel_train.telemetry import Telemetry

log = logging.getLogger(__name__)

RULES_FILE = "rules.json"
REPORT_FILE = "report.html"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Scalars:
    """TensorBoard scalars in OUTPUT_DIR/tensorboard, the folder SageMaker uploads when the job has a
    TensorBoardOutputConfig (tensorboardX writes the event files; TensorBoard itself is not needed)."""

    def __init__(self, folder: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(folder), flush_secs=30)
        self.written = 0  # system samples already written

    def reading(self, reading: dict[str, float]) -> None:
        for key, value in reading.items():
            if key not in ("step", "epoch", "seconds"):
                self.writer.add_scalar(f"step/{key}", value, int(reading["step"]))

    def epoch(self, record: dict[str, float], samples: list[dict[str, Any]]) -> None:
        for key, value in record.items():
            if key != "epoch":
                self.writer.add_scalar(f"epoch/{key}", value, int(record["epoch"]))
        for sample in samples[self.written :]:
            second = int(sample["seconds"])
            cpu = list(sample["cpu"])
            self.writer.add_scalar("system/cpu_percent", sum(cpu) / max(len(cpu), 1), second)
            self.writer.add_scalar("system/memory_percent", sample["memory"], second)
            for index, gpu in enumerate(sample["gpus"]):
                self.writer.add_scalar(f"system/gpu{index}_utilization", gpu["utilization"], second)
                self.writer.add_scalar(f"system/gpu{index}_memory_percent", gpu["memory"], second)
        self.written = len(samples)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class Insight:
    def __init__(self, config: TrainConfig, dist: DistContext, telemetry: Telemetry) -> None:
        self.config = config
        self.dist = dist
        self.telemetry = telemetry
        self.rules = Rules(config)
        interval = config.system_sample_ms / 1000 if dist.is_main else 0
        self.sampler = SystemSampler(interval, clock=telemetry.seconds)
        self.gpus_in_use = list(range(dist.local_world_size)) if dist.device.type == "cuda" else []
        self.activations_checked = False
        self.ended: str | None = None
        self.scalars = Scalars(Path(config.output_dir) / "tensorboard") if dist.is_main else None

    @property
    def stop(self) -> Finding | None:
        return self.rules.stop

    def start(self, fresh: bool) -> None:
        if fresh:
            self.telemetry.watch_activations()
        self.sampler.start()

    def close(self) -> None:
        self.sampler.stop()
        if self.scalars:
            self.scalars.close()

    def _report(self, findings: list[Finding]) -> None:
        if self.dist.is_main:
            for finding in findings:
                print(finding.line(), flush=True)

    def _at(self) -> dict[str, Any]:
        return {
            "epoch": self.telemetry.epoch + 1,
            "step": self.telemetry.step,
            "seconds": self.telemetry.seconds(),
        }

    def observe(self, reading: dict[str, float]) -> None:
        found = []
        if not self.activations_checked and self.telemetry.activations:
            self.activations_checked = True
            found += self.rules.check_activations(self.telemetry.activations, self._at())
        found += self.rules.check_reading(reading)
        self._report(found)
        if self.dist.is_main:
            share = reading["data_wait"] / max(self.step_seconds(reading), 1e-12)
            norm = f", gradient norm {reading['grad_norm']:.3g}" if "grad_norm" in reading else ""
            log.info(
                "step %d (epoch %d): loss %.4g%s, %.0f images/s, data wait %.0f%%",
                reading["step"], reading["epoch"], reading["loss"], norm,
                reading["images_per_second"], 100 * share,
            )  # fmt: skip
        if self.scalars:
            self.scalars.reading(reading)

    @staticmethod
    def step_seconds(reading: dict[str, float]) -> float:
        return sum(reading[key] for key in ("data_wait", "forward_backward", "allreduce_wait", "optimizer"))

    def gpu_medians(self, start: float, end: float) -> dict[int, float]:
        samples = self.sampler.between(start, end)
        medians = {}
        for index in self.gpus_in_use:
            values = [s["gpus"][index]["utilization"] for s in samples if len(s["gpus"]) > index]
            if values:
                medians[index] = statistics.median(values)
        return medians

    def epoch(self, record: dict[str, float], train_started: float, train_ended: float) -> bool:
        """Rules on the epoch's figures. Returns whether it is the best epoch so far."""
        best, found = self.rules.check_epoch(record, self.gpu_medians(train_started, train_ended), self._at())
        self._report(found)
        if self.scalars:
            self.scalars.epoch(record, self.sampler.samples)
        return best

    def share_stop(self) -> Finding:
        """The finding that stops the run, the same on every rank (any of them may have raised it)."""
        finding = self.rules.stop
        if self.dist.distributed:
            gathered: list[Any] = [None] * self.dist.world_size
            torch_dist.all_gather_object(gathered, finding)
            finding = next(f for f in gathered if f is not None)
            self.rules.stop = finding
        return finding

    def stop_or_fail(self) -> None:
        """Called on every rank when some rank's rule said stop: early stopping sets `ended`, any other
        rule raises RuleStopped (the job fails)."""
        finding = self.share_stop()
        if finding.rule not in ("overtraining", "overfit"):
            raise RuleStopped(finding)
        self.ended = f"early stopping: {finding.describe()}"

    def state_dict(self) -> dict[str, Any]:
        return {
            "telemetry": self.telemetry.state_dict(),
            "rules": self.rules.state_dict(),
            "system": list(self.sampler.samples),
            "activations_checked": self.activations_checked,
            "ended": self.ended,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.telemetry.load_state_dict(state["telemetry"])
        self.rules.load_state_dict(state["rules"])
        self.sampler.samples = list(state["system"])
        self.activations_checked = state["activations_checked"]
        self.ended = state["ended"]

    def summary(self, extra: dict[str, Any]) -> dict[str, Any]:
        """rules.json: the rules, their findings, the epochs, the best epoch, why training ended."""
        return {**self.rules.summary(), "ended": self.ended or "completed all epochs", **extra}

    def write(self, results: dict[str, Any], model_dir: Path | None) -> list[Path]:
        """rules.json and report.html into OUTPUT_DIR/data, and into the model directory when there is
        one (rank 0). Returns the report paths. A report that cannot be drawn is logged, never fatal: the
        model it describes is already written."""
        rules = self.summary({"metrics": results.get("metrics", {})})
        folders = [Path(self.config.output_dir) / "data", *([model_dir] if model_dir else [])]
        for folder in folders:
            atomic_write(folder / RULES_FILE, json.dumps(rules, indent=1, default=str) + "\n")
        try:
            html = report.render(
                {
                    **results,
                    "rules": rules,
                    "history": self.telemetry.history,
                    "activations": self.telemetry.activations,
                    "system": list(self.sampler.samples),  # a copy: the sampler may still be adding
                    "gpus_in_use": self.gpus_in_use,
                    "seconds": self.telemetry.seconds(),
                }
            )
        except Exception:
            log.exception("cannot draw the report; rules.json is written")
            return []
        for folder in folders:
            atomic_write(folder / REPORT_FILE, html)
        return [folder / REPORT_FILE for folder in folders]


def best_weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights, kept while later epochs train."""
    return {key: value.detach().to("cpu", copy=True) for key, value in net.state_dict().items()}
