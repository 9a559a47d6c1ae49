"""A tuning job's trials, best first, and `promote`: the best completed trial into the stack file.

    python -m deploy trials  --stack my-stack.toml TUNING_JOB
    python -m deploy promote --stack my-stack.toml TUNING_JOB

`promote` sets `training_job` in the stack file's [model] table and comments out `dir`, with tomlkit, so
every other line, comment and blank stays as it was; the next `up` serves the promoted model.
"""

import os
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import tomlkit
from tomlkit.items import Table

from deploy.aws import DeployError, Run
from deploy.follow import duration
from deploy.stack import StackError, parse


@dataclass(frozen=True)
class Trial:
    name: str
    status: str
    hyperparameters: dict[str, str]
    objective: float | None
    seconds: float | None
    failure: str | None = None


@dataclass(frozen=True)
class Trials:
    tuning_job: str
    metric: str
    maximize: bool
    trials: list[Trial]  # best first

    def best(self) -> Trial:
        """The best completed trial with an objective value."""
        for trial in self.trials:
            if trial.status == "Completed" and trial.objective is not None:
                return trial
        raise DeployError(
            f"tuning job {self.tuning_job} has no completed trial with a {self.metric} value yet;"
            f" see `python -m deploy trials` for how each trial ended"
        )

    def table(self) -> list[str]:
        names = sorted({k for t in self.trials for k in t.hyperparameters})
        header = ["#", "trial", *names, self.metric, "status", "duration"]
        rows = [
            [
                str(rank),
                t.name,
                *(t.hyperparameters.get(n, "") for n in names),
                "-" if t.objective is None else f"{t.objective:.6g}",
                t.status,
                duration(t.seconds),
            ]
            for rank, t in enumerate(self.trials, 1)
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]
        ]
        for t in self.trials:
            if t.failure:
                lines.append(f"{t.name}: {t.failure}")
        return lines


def _seconds(summary: dict) -> float | None:
    start, end = summary.get("TrainingStartTime"), summary.get("TrainingEndTime")
    if isinstance(start, datetime) and isinstance(end, datetime):
        return (end - start).total_seconds()
    return None


def list_trials(run: Run, tuning_job: str) -> Trials:
    """Every trial of the tuning job, best first: completed ones by objective, then the rest by name."""
    sagemaker = run.client("sagemaker")
    described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job)
    objective = described["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]
    maximize = objective["Type"] == "Maximize"
    pages = sagemaker.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
        HyperParameterTuningJobName=tuning_job
    )
    trials = []
    for page in pages:
        for summary in page["TrainingJobSummaries"]:
            metric = summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
            trials.append(
                Trial(
                    name=summary["TrainingJobName"],
                    status=summary["TrainingJobStatus"],
                    hyperparameters={k: v.strip('"') for k, v in summary["TunedHyperParameters"].items()},
                    objective=metric.get("Value"),
                    seconds=_seconds(summary),
                    failure=summary.get("FailureReason"),
                )
            )

    def rank(t: Trial) -> tuple:
        scored = t.status == "Completed" and t.objective is not None
        value = (-t.objective if maximize else t.objective) if scored else 0.0
        return (not scored, value, t.name)

    return Trials(tuning_job, objective["MetricName"], maximize, sorted(trials, key=rank))


def promote(stack_path: Path, training_job: str) -> None:
    """Writes `training_job` into [model] (commenting out `dir`), checked to load before it is saved."""
    text = stack_path.read_text()
    doc = tomlkit.parse(text)
    if not isinstance(doc.get("model"), Table):
        raise DeployError(f"{stack_path}: no [model] table to promote into")
    old = doc["model"]
    new = tomlkit.table()
    placed = "training_job" in old
    for key, item in old.value.body:
        if key is None:
            new.add(item)
        elif key.key == "dir":
            new.add(tomlkit.comment(f"dir = {item.as_string().strip()}  (replaced by `deploy promote`)"))
            if not placed:
                new.add("training_job", training_job)
        elif key.key == "training_job":
            value = tomlkit.item(training_job)
            value.trivia.comment_ws, value.trivia.comment = item.trivia.comment_ws, item.trivia.comment
            new.add(key, value)
        else:
            new.add(key, item)
    if "training_job" not in new:
        new.add("training_job", training_job)
    doc["model"] = new
    result = tomlkit.dumps(doc)
    try:
        parse(tomllib.loads(result), stack_path.resolve().parent, stack_path)
    except (StackError, tomllib.TOMLDecodeError) as err:
        raise DeployError(f"{stack_path}: promoting {training_job} would not load", str(err)) from err
    temporary = stack_path.with_name(f".{stack_path.name}.tmp")
    temporary.write_text(result)
    os.replace(temporary, stack_path)
