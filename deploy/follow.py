"""Following a SageMaker job to its end: status changes, its CloudWatch log lines as they arrive, the result.

    python -m deploy follow --stack my-stack.toml JOB     # a training, tuning or transform job
    python -m deploy stop   --stack my-stack.toml JOB

`train --wait`, `tune --wait` and `transform` follow the job they start with the same code. Ctrl-C stops
following, never the job; the command then prints how to follow it again and how to stop it.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from deploy import poll
from deploy.aws import DeployError, Run, sagemaker_not_found

TERMINAL = {"Completed", "Failed", "Stopped"}
# Seconds between polls while following (at most): log lines show up within this long.
FOLLOW_SECONDS = 10
TRAINING_LOGS = "/aws/sagemaker/TrainingJobs"
TRANSFORM_LOGS = "/aws/sagemaker/TransformJobs"
# What a user should know about a training job's spot-related secondary statuses.
SPOT_NOTES = {
    "Interrupted": "spot capacity was reclaimed; the job resumes from its last checkpoint",
    "Restarting": "resuming on new spot capacity",
    "MaxWaitTimeExceeded": "spot capacity did not come back within training.max_wait_seconds",
}
# A finding of the training image's rules, as its log has it (containers/train/kennel_train/rules.py):
#   finding rule=overfit action=warn epoch=7 step=1400 seconds=812.4 gap=0.3112 ...
FINDING = re.compile(
    r"finding rule=(?P<rule>\w+) action=(?P<action>warn|stop) epoch=(?P<epoch>\d+) step=\d+ "
)


@dataclass
class LogTail:
    """The new lines of every log stream of `group` whose name starts with `prefix`.

    SageMaker names a job's streams JOB/algo-N-EPOCH; a spot restart opens new ones, found on the next
    call. Each stream is read forward from where the previous call stopped."""

    run: Run
    group: str
    prefix: str
    tokens: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        logs = self.run.client("logs")
        try:
            pages = logs.get_paginator("describe_log_streams").paginate(
                logGroupName=self.group, logStreamNamePrefix=self.prefix
            )
            streams = sorted(s["logStreamName"] for page in pages for s in page["logStreams"])
        except logs.exceptions.ResourceNotFoundException:  # the job has not written anything yet
            return []
        out = []
        for stream in streams:
            while True:
                token = self.tokens.get(stream)
                page = logs.get_log_events(
                    logGroupName=self.group,
                    logStreamName=stream,
                    startFromHead=True,
                    **({"nextToken": token} if token else {}),
                )
                label = self.label(stream)
                out.extend(f"[{label}] {event['message'].rstrip()}" for event in page["events"])
                self.tokens[stream] = page["nextForwardToken"]
                if not page["events"] or page["nextForwardToken"] == token:
                    break
        return out

    def label(self, stream: str) -> str:
        """algo-1 for a job's own stream; 003-1a2b3c4d/algo-1 for a tuning trial's."""
        job, _, host = stream.partition("/")
        host = re.sub(r"-\d+$", "", host)
        job = job[len(self.prefix) :].strip("/-")
        return f"{job}/{host}" if job else host


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _loop(
    run: Run, describe: Callable[[], str], tail: LogTail, seen: Callable[[str], None] = lambda line: None
) -> None:
    """describe() says what changed and returns the status; log lines follow (each also to `seen`);
    until a terminal status. No deadline of its own: the job's stopping condition ends it."""

    def ended() -> str | None:
        status = describe()
        for line in tail.lines():
            run.say(line)
            seen(line)
        return status if status in TERMINAL else None

    poll.until(
        ended,
        what="the job did not end",
        within=None,
        first=min(run.poll_seconds, FOLLOW_SECONDS),
        cap=FOLLOW_SECONDS,
    )


def follow_training(run: Run, name: str) -> dict[str, Any]:
    """Follows a training job; returns its final description, or raises with its FailureReason."""
    sagemaker = run.client("sagemaker")
    printed: list[tuple[str, str]] = []
    final: dict[str, Any] = {}

    def describe() -> str:
        described = sagemaker.describe_training_job(TrainingJobName=name)
        final.update(described)
        transitions = [
            (t["Status"], t.get("StatusMessage", "")) for t in described.get("SecondaryStatusTransitions", [])
        ]
        for index, (status, message) in enumerate(transitions):
            if index < len(printed) and printed[index] == (status, message):
                continue
            note = f" ({SPOT_NOTES[status]})" if status in SPOT_NOTES else ""
            run.say(f"{name}: {status}{' - ' + message if message else ''}{note}")
        printed[:] = transitions
        return described["TrainingJobStatus"]

    findings: list[re.Match] = []
    tail = LogTail(run, TRAINING_LOGS, f"{name}/")
    _loop(run, describe, tail, lambda line: findings.extend(FINDING.finditer(line)))
    for metric in final.get("FinalMetricDataList", []):
        run.say(f"  {metric['MetricName']} = {metric['Value']:g}")
    if findings:
        listed = "; ".join(f"{f['rule']} ({f['action']}) at epoch {f['epoch']}" for f in findings)
        run.say(f"  findings: {len(findings)}: {listed}")
    training, billable = final.get("TrainingTimeInSeconds"), final.get("BillableTimeInSeconds")
    if training and billable is not None and final.get("EnableManagedSpotTraining"):
        run.say(
            f"  {duration(training)} training, {duration(billable)} billed"
            f" (spot saved {100 * (1 - billable / training):.0f}%)"
        )
    if final["TrainingJobStatus"] != "Completed":
        raise DeployError(f"training job {name} {final['TrainingJobStatus']}", final.get("FailureReason"))
    return final


def follow_tuning(run: Run, name: str) -> dict[str, Any]:
    """Follows a tuning job: its status, trial counts, the best trial so far, and every trial's log."""
    sagemaker = run.client("sagemaker")
    seen: dict[str, Any] = {}
    final: dict[str, Any] = {}

    def describe() -> str:
        described = sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        final.update(described)
        status = described["HyperParameterTuningJobStatus"]
        counts = described.get("TrainingJobStatusCounters", {})
        best = described.get("BestTrainingJob", {})
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric", {})
        now = {
            "status": f"{name}: {status}",
            "counts": (
                f"{name}: trials {counts.get('Completed', 0)} completed, "
                f"{counts.get('InProgress', 0)} running, "
                f"{counts.get('RetryableError', 0) + counts.get('NonRetryableError', 0)} failed, "
                f"{counts.get('Stopped', 0)} stopped"
            ),
            "best": objective
            and f"{name}: best so far {best['TrainingJobName']}: "
            f"{objective['MetricName']} = {objective['Value']:g}",
        }
        for key, line in now.items():
            if line and seen.get(key) != line:
                run.say(line)
        seen.update(now)
        return status

    _loop(run, describe, LogTail(run, TRAINING_LOGS, f"{name}-"))
    if final["HyperParameterTuningJobStatus"] == "Failed":
        raise DeployError(f"tuning job {name} Failed", final.get("FailureReason"))
    return final


def follow_transform(run: Run, name: str) -> dict[str, Any]:
    """Follows a batch transform job; returns its final description, or raises with its FailureReason."""
    sagemaker = run.client("sagemaker")
    seen: list[str] = []
    final: dict[str, Any] = {}

    def describe() -> str:
        described = sagemaker.describe_transform_job(TransformJobName=name)
        final.update(described)
        status = described["TransformJobStatus"]
        if seen[-1:] != [status]:
            run.say(f"{name}: {status}")
            seen.append(status)
        return status

    _loop(run, describe, LogTail(run, TRANSFORM_LOGS, f"{name}/"))
    if final["TransformJobStatus"] != "Completed":
        raise DeployError(f"transform job {name} {final['TransformJobStatus']}", final.get("FailureReason"))
    return final


KINDS = {
    # kind: (describe call, its name parameter, follow, stop call)
    "training": ("describe_training_job", "TrainingJobName", follow_training, "stop_training_job"),
    "tuning": (
        "describe_hyper_parameter_tuning_job",
        "HyperParameterTuningJobName",
        follow_tuning,
        "stop_hyper_parameter_tuning_job",
    ),
    "transform": ("describe_transform_job", "TransformJobName", follow_transform, "stop_transform_job"),
}


def job_kind(run: Run, name: str) -> str:
    """Whether `name` is a training, tuning or transform job."""
    sagemaker = run.client("sagemaker")
    for kind, (describe, parameter, _, _) in KINDS.items():
        try:
            getattr(sagemaker, describe)(**{parameter: name})
            return kind
        except sagemaker.exceptions.ResourceNotFound:  # the modeled answer; tuning jobs get it
            continue
        except ClientError as err:
            if not sagemaker_not_found(err):
                raise
    raise DeployError(f"no training, tuning or transform job named {name} in {run.stack.region}")


def follow(run: Run, name: str) -> dict[str, Any]:
    return KINDS[job_kind(run, name)][2](run, name)


def stop(run: Run, name: str) -> str:
    """Asks SageMaker to stop the job; returns its kind. A training job saves a checkpoint first."""
    kind = job_kind(run, name)
    _, parameter, _, call = KINDS[kind]
    try:
        getattr(run.client("sagemaker"), call)(**{parameter: name})
    except ClientError as err:
        raise DeployError(f"cannot stop {kind} job {name}", err.response["Error"].get("Message")) from err
    return kind


def hint(stack_path: str, name: str) -> str:
    """What Ctrl-C prints: the job runs on; how to follow it again or stop it."""
    return (
        f"stopped following {name}; the job keeps running.\n"
        f"  follow it again: python -m deploy follow --stack {stack_path} {name}\n"
        f"  stop it:         python -m deploy stop --stack {stack_path} {name}"
    )
