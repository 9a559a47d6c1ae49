"""Training and tuning jobs with the pushed training image, the stack's S3 layout and its training role.

Data channels are read from s3://BUCKET/PREFIX/data/CHANNEL/, outputs go to .../training/ and spot
checkpoints to .../checkpoints/JOB/, the prefixes the training role may touch. With `training.tensorboard`
the job's TensorBoard scalars (the trainer writes them to /opt/ml/output/tensorboard) are synced to
.../training/JOB/tensorboard/, beside its output.
"""

import json
import time
from pathlib import Path
from typing import Any

from deploy import ecr, iam
from deploy.aws import DeployError, Run
from deploy.stack import ROOT

METRIC_DEFINITIONS = ROOT / "containers" / "train" / "kennel_train" / "metric_definitions.json"
OBJECTIVE = "validation:accuracy"


def metric_definitions(path: Path = METRIC_DEFINITIONS) -> list[dict[str, str]]:
    """The MetricDefinitions the trainer's log lines match, as shipped with the training image."""
    try:
        definitions = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(
            f"{path} is missing: the training image ships its metric definitions there"
        ) from None
    if not isinstance(definitions, list) or not all({"Name", "Regex"} <= set(d) for d in definitions):
        raise DeployError(f"{path} is not a list of {{'Name', 'Regex'}} metric definitions")
    if OBJECTIVE not in {d["Name"] for d in definitions}:
        raise DeployError(f"{path} defines no {OBJECTIVE} metric, the tuning objective")
    return definitions


def job_name(run: Run, kind: str) -> str:
    """Unique, and short enough for tuning jobs (32 characters)."""
    return f"{run.stack.name}-{kind}{time.strftime('%m%d%H%M%S', time.gmtime())}"


def definition(run: Run, definitions: list[dict[str, str]]) -> dict[str, Any]:
    """The parts a training job and a tuning job's training definition share."""
    stack, training = run.stack, run.stack.training
    stopping = {"MaxRuntimeInSeconds": training.max_runtime_seconds}
    if training.spot:
        stopping["MaxWaitTimeInSeconds"] = training.max_wait_seconds
    return {
        "AlgorithmSpecification": {
            "TrainingImage": ecr.image_uri(run, "train"),
            "TrainingInputMode": "File",
            "MetricDefinitions": definitions,
        },
        "RoleArn": iam.role_arn(run, stack.training_role),
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": stack.s3_uri("data", channel) + "/",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in training.channels
        ],
        "OutputDataConfig": {"S3OutputPath": stack.s3_uri("training") + "/"},
        "ResourceConfig": {
            "InstanceType": training.instance_type,
            "InstanceCount": training.instance_count,
            "VolumeSizeInGB": training.volume_size_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": training.spot,
    }


def ensure_training_image(run: Run) -> str:
    """What a job needs and `up` does not make: the training image in its repository (built and pushed
    unless its tag is there), and the training role. Returns the image URI."""
    ecr.ensure_repository(run, "train")
    uri = ecr.ensure_image(run, "train")
    for name, service, policy in iam.roles(run):
        if name == run.stack.training_role:
            iam.ensure_role(run, name, service, policy)
    return uri


# Where the training image writes its TensorBoard event files (kennel_train/insight.py), SageMaker's default.
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"


def tensorboard_uri(run: Run, name: str) -> str:
    return run.stack.s3_uri("training", name, "tensorboard") + "/"


def start_training(run: Run, definitions: list[dict[str, str]]) -> str:
    name = job_name(run, "train")
    tensorboard = {"S3OutputPath": tensorboard_uri(run, name), "LocalPath": TENSORBOARD_LOCAL_PATH}
    run.client("sagemaker").create_training_job(
        TrainingJobName=name,
        HyperParameters=run.stack.training.hyperparameters,
        CheckpointConfig={"S3Uri": run.stack.s3_uri("checkpoints", name) + "/"},
        **({"TensorBoardOutputConfig": tensorboard} if run.stack.training.tensorboard else {}),
        Tags=run.tag_list(),
        **definition(run, definitions),
    )
    return name


def start_tuning(run: Run, definitions: list[dict[str, str]]) -> str:
    stack, tuning = run.stack, run.stack.tuning
    name = job_name(run, "t")
    static = {k: v for k, v in stack.training.hyperparameters.items() if k not in {"lr", "batch_size"}}
    training = definition(run, definitions)
    training["CheckpointConfig"] = {"S3Uri": stack.s3_uri("checkpoints", name) + "/"}
    run.client("sagemaker").create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": OBJECTIVE},
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": tuning.max_jobs,
                "MaxParallelTrainingJobs": tuning.max_parallel_jobs,
            },
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "lr",
                        "MinValue": str(tuning.learning_rate[0]),
                        "MaxValue": str(tuning.learning_rate[1]),
                        "ScalingType": "Logarithmic",
                    }
                ],
                "CategoricalParameterRanges": [
                    {"Name": "batch_size", "Values": [str(b) for b in tuning.batch_sizes]}
                ],
            },
        },
        TrainingJobDefinition={"StaticHyperParameters": static, **training},
        Tags=run.tag_list(),
    )
    return name
