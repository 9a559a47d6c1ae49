"""Rules that watch a run, in the spirit of SageMaker Debugger's, and their findings.

Each rule has an action (a flag of the same name: off, warn or stop) and thresholds (flags too). A rule
reports a finding when its condition starts to hold (not again while it keeps holding): one log line in
a fixed form, which `deploy follow` and FINDING below parse, and an entry in rules.json:

    finding rule=overfit action=warn epoch=7 step=1400 seconds=812.4 gap=0.3112 gap_before=0.1024 ...

What `stop` does depends on the rule: `overtraining` and `overfit` end training early and the model is
written from the best validation epoch (the job succeeds); every other rule fails the job, with the
finding as the failure reason (OUTPUT_DIR/failure).

The best epoch (highest validation accuracy, ties to the lower validation loss) is tracked here for
every run, whatever the actions: the model directory is always written from it.
"""

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from kennel_train.config import TrainConfig

RULES = (
    "vanishing_gradient",
    "exploding_gradient",
    "poor_weight_initialization",
    "loss_not_decreasing",
    "overfit",
    "overtraining",
    "dataloader_bottleneck",
    "low_gpu_utilization",
)
# Rules whose `stop` ends training early with the best epoch's model; the others' `stop` fails the job.
EARLY_STOPPING = ("overtraining", "overfit")
THRESHOLDS = {
    rule: [name for name in TrainConfig.__dataclass_fields__ if name.startswith(rule + "_")] for rule in RULES
}

FINDING = re.compile(
    r"^finding rule=(?P<rule>\w+) action=(?P<action>warn|stop) epoch=(?P<epoch>\d+) step=(?P<step>\d+) "
    r"seconds=(?P<seconds>[0-9.]+)(?P<figures>(?: \w+=\S+)*)$"
)


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Finding:
    rule: str
    action: str
    epoch: int
    step: int
    seconds: float
    figures: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        figures = "".join(f" {key}={_shown(value)}" for key, value in self.figures.items())
        return (
            f"finding rule={self.rule} action={self.action} epoch={self.epoch} step={self.step} "
            f"seconds={self.seconds:.1f}{figures}"
        )

    def describe(self) -> str:
        figures = ", ".join(f"{key} {_shown(value)}" for key, value in self.figures.items())
        return f"{self.rule} at epoch {self.epoch}, step {self.step}: {figures}"

    @classmethod
    def parse(cls, line: str) -> "Finding | None":
        match = FINDING.match(line.strip())
        if not match:
            return None
        figures = dict(item.split("=", 1) for item in match["figures"].split())
        return cls(
            match["rule"], match["action"], int(match["epoch"]), int(match["step"]),
            float(match["seconds"]), figures,
        )  # fmt: skip


class RuleStopped(Exception):
    """A rule whose action is `stop` fired; the job fails with the finding as its reason."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(f"rule {finding.rule} stopped training: {finding.describe()}")
        self.finding = finding


class Rules:
    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.actions = {rule: getattr(config, rule) for rule in RULES}
        self.findings: list[Finding] = []
        self.firing: set[str] = set()
        self.stop: Finding | None = None
        self.epochs: list[dict[str, float]] = []
        self.best: dict[str, float] | None = None
        self.best_train_loss = math.inf
        self.flat_epochs = 0

    # Every check returns the new findings; the caller logs them.
    def _observe(self, rule: str, holds: bool, at: dict[str, Any], figures: dict[str, Any]) -> list[Finding]:
        action = self.actions[rule]
        if action == "off":
            return []
        if not holds:
            self.firing.discard(rule)
            return []
        if rule in self.firing:
            return []
        self.firing.add(rule)
        finding = Finding(rule, action, int(at["epoch"]), int(at["step"]), float(at["seconds"]), figures)
        self.findings.append(finding)
        if action == "stop" and self.stop is None:
            self.stop = finding
        return [finding]

    def check_activations(
        self, activations: dict[str, dict[str, float]], at: dict[str, Any]
    ) -> list[Finding]:
        """At the first step: activation spread across layer groups."""
        if not activations:
            return []
        stds = {name: stats["std"] for name, stats in activations.items()}
        low, high = min(stds, key=stds.get), max(stds, key=stds.get)
        ratio = stds[high] / stds[low] if stds[low] > 0 else math.inf
        limit = self.config.poor_weight_initialization_threshold
        figures = {"std_ratio": ratio, "lowest": low, "lowest_std": stds[low], "highest": high}
        figures |= {"highest_std": stds[high], "threshold": limit}
        return self._observe("poor_weight_initialization", not ratio <= limit, at, figures)

    def check_reading(self, reading: dict[str, float]) -> list[Finding]:
        """Every telemetry reading: exploding (also a NaN or infinite loss) and vanishing gradients."""
        found = []
        norm = reading.get("grad_norm", math.nan)
        limit = self.config.exploding_gradient_threshold
        exploding = reading["nonfinite_losses"] > 0 or (math.isfinite(norm) and norm > limit)
        figures = {"loss": reading["loss"], "nonfinite_losses": int(reading["nonfinite_losses"])}
        figures |= {"grad_norm": norm, "threshold": limit}
        found += self._observe("exploding_gradient", exploding, reading, figures)
        rms = {key.split("/", 1)[1]: value for key, value in reading.items() if key.startswith("grad_rms/")}
        if rms:
            limit = self.config.vanishing_gradient_threshold
            vanished = sorted(name for name, value in rms.items() if value < limit)
            lowest = min(rms, key=rms.get)
            figures = {"group": lowest, "grad_rms": rms[lowest], "threshold": limit}
            figures["groups"] = ",".join(vanished) or "-"
            found += self._observe("vanishing_gradient", bool(vanished), reading, figures)
        return found

    def check_epoch(
        self, record: dict[str, float], gpu_utilization: dict[int, float], at: dict[str, Any]
    ) -> tuple[bool, list[Finding]]:
        """After each epoch's validation. Returns whether this epoch is the best so far, and findings."""
        config, found = self.config, []
        self.epochs.append(record)
        accuracy, loss = record["validation_accuracy"], record["validation_loss"]
        best = self.best is None or (accuracy, -loss) > (
            self.best["validation_accuracy"],
            -self.best["validation_loss"],
        )
        if best:
            self.best = {**record}
        since = int(record["epoch"] - self.best["epoch"])
        figures = {"best_epoch": int(self.best["epoch"]), "best_accuracy": self.best["validation_accuracy"]}
        figures |= {"epochs_without_improvement": since, "patience": config.overtraining_patience}
        found += self._observe("overtraining", since >= config.overtraining_patience, at, figures)

        train_loss = record["train_loss"]
        if train_loss < self.best_train_loss * (1 - config.loss_not_decreasing_min_delta):
            self.best_train_loss, self.flat_epochs = train_loss, 0
        else:
            self.flat_epochs += 1
        figures = {"train_loss": train_loss, "best_train_loss": self.best_train_loss}
        figures |= {"epochs": self.flat_epochs, "min_delta": config.loss_not_decreasing_min_delta}
        found += self._observe(
            "loss_not_decreasing", self.flat_epochs >= config.loss_not_decreasing_epochs, at, figures
        )

        # The shape of overfitting: over the last K epochs training got better and validation worse.
        span = config.overfit_epochs
        before = self.epochs[-1 - span] if len(self.epochs) > span else None
        overfitting = bool(before) and train_loss < before["train_loss"] and loss > before["validation_loss"]
        figures = {"gap": loss - train_loss, "epochs": span}
        if before:
            figures |= {"gap_before": before["validation_loss"] - before["train_loss"]}
            figures |= {"train_loss": train_loss, "train_loss_before": before["train_loss"]}
            figures |= {"validation_loss": loss, "validation_loss_before": before["validation_loss"]}
        found += self._observe("overfit", overfitting, at, figures)

        share, limit = record["data_wait_share"], config.dataloader_bottleneck_threshold
        figures = {"data_wait_share": share, "threshold": limit}
        found += self._observe("dataloader_bottleneck", share > limit, at, figures)

        limit = config.low_gpu_utilization_threshold
        low = {gpu: value for gpu, value in gpu_utilization.items() if value < limit}
        lowest = min(gpu_utilization, key=gpu_utilization.get) if gpu_utilization else -1
        figures = {
            "gpu": lowest,
            "median_utilization": gpu_utilization.get(lowest, math.nan),
            "threshold": limit,
        }
        found += self._observe("low_gpu_utilization", bool(low), at, figures)
        return best, found

    @property
    def stops_early(self) -> bool:
        return self.stop is not None and self.stop.rule in EARLY_STOPPING

    def summary(self) -> dict[str, Any]:
        """rules.json, less what the engine adds (why training ended)."""
        counts = {rule: sum(f.rule == rule for f in self.findings) for rule in RULES}
        return {
            "rules": {
                rule: {
                    "action": self.actions[rule],
                    "thresholds": {name: getattr(self.config, name) for name in THRESHOLDS[rule]},
                    "findings": counts[rule],
                }
                for rule in RULES
            },
            "findings": [asdict(f) for f in self.findings],
            "best_epoch": int(self.best["epoch"]) if self.best else None,
            "epochs": list(self.epochs),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "findings": [asdict(f) for f in self.findings],
            "firing": sorted(self.firing),
            "stop": asdict(self.stop) if self.stop else None,
            "epochs": list(self.epochs),
            "best": self.best,
            "best_train_loss": self.best_train_loss,
            "flat_epochs": self.flat_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.findings = [Finding(**f) for f in state["findings"]]
        self.firing = set(state["firing"])
        self.stop = Finding(**state["stop"]) if state["stop"] else None
        self.epochs = list(state["epochs"])
        self.best = state["best"]
        self.best_train_loss = state["best_train_loss"]
        self.flat_epochs = state["flat_epochs"]
