"""What a user writes with SageMaker's Python SDK (v2) for a bring-your-own-container job, in local mode:
train with an Estimator, deploy the model and call it through a Predictor, run a batch transform.

Runs in the SDK's own environment (requirements-sdk.txt) with scripts/ on PATH for `docker-compose`. It
takes a plan (a scratch folder, the endpoint's port, steps) and runs the steps in order in one process, as
in a notebook; a step without `model_data` uses the model the last `train` step wrote. What the SDK
returned goes to RESULT.json, the SDK's log (with the containers') to stdout. tests/sdk/ writes the plan;
by hand:

    PATH="$PWD/scripts:$PATH" AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \\
        .kennel/sdk-venv/bin/python tests/sdk/journey.py RESULT.json '{"root": "/abs/scratch",
        "port": 8080, "steps": [{"step": "train", "image": "kennel-train:local", "instances": 1,
        "data": "/abs/data", "output": "/abs/out", "hyperparameters": {"weights": "none"}}]}'
"""

import json
import os
import sys
import traceback
from pathlib import Path

from sagemaker.deserializers import JSONDeserializer
from sagemaker.estimator import Estimator
from sagemaker.local import LocalSession
from sagemaker.model import Model
from sagemaker.predictor import Predictor
from sagemaker.serializers import IdentitySerializer

# Local mode never assumes it; any well-formed ARN will do.
ROLE = "arn:aws:iam::111111111111:role/kennel-sdk-local"
# No usage reports to AWS from a test: they would only time out offline.
SDK_DEFAULTS = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def local_session(root: str, port: int) -> LocalSession:
    """A local-mode session whose scratch folders live under `root` and whose endpoint listens on `port`
    (the SDK's default, 8080, may be taken on a shared machine)."""
    session = LocalSession(sagemaker_config=SDK_DEFAULTS)
    session.config = {"local": {"local_code": True, "container_root": root, "serving_port": port}}
    return session


def train(args: dict) -> dict:
    session = local_session(args["root"], args["port"])
    estimator = Estimator(
        image_uri=args["image"],
        role=ROLE,
        instance_count=args["instances"],
        instance_type="local",
        output_path=f"file://{args['output']}",
        hyperparameters=args["hyperparameters"],
        sagemaker_session=session,
    )
    estimator.fit({"training": f"file://{args['data']}"}, job_name=args.get("job_name"))
    job = estimator.latest_training_job.describe()
    return {
        "model_data": estimator.model_data,
        "job_name": estimator.latest_training_job.name,
        "status": job["TrainingJobStatus"],
        "instance_count": job["ResourceConfig"]["InstanceCount"],
    }


def model(args: dict, session: LocalSession) -> Model:
    return Model(
        image_uri=args["image"],
        model_data=args["model_data"],
        role=ROLE,
        predictor_cls=Predictor,
        sagemaker_session=session,
    )


def predict(args: dict) -> dict:
    session = local_session(args["root"], args["port"])
    predictor = model(args, session).deploy(
        initial_instance_count=1,
        instance_type="local",
        endpoint_name=args["endpoint"],
        serializer=IdentitySerializer("image/jpeg"),
        deserializer=JSONDeserializer(),
    )
    try:
        status = session.sagemaker_client.describe_endpoint(args["endpoint"])["EndpointStatus"]
        answers = {
            image: predictor.predict(
                Path(image).read_bytes(), initial_args={"CustomAttributes": f"top_k={args['top_k']}"}
            )
            for image in args["images"]
        }
    finally:
        predictor.delete_endpoint()
    return {"endpoint_status": status, "answers": answers}


def transform(args: dict) -> dict:
    session = local_session(args["root"], args["port"])
    transformer = model(args, session).transformer(
        instance_count=1,
        instance_type="local",
        output_path=f"file://{args['output']}",
        accept=args["accept"],
        assemble_with=args.get("assemble_with"),
        # Always given: local mode otherwise takes the container's /execution-parameters answer, spelt as
        # in SageMaker's batch transform guide (MULTI_RECORD), and accepts only the API's (MultiRecord).
        # SingleRecord for whole files of bytes: local mode's MultiRecord joins records as text.
        strategy=args["strategy"],
    )
    # Local mode runs the whole job inside transform(). Waiting for it (wait=True) and its logs would
    # call CloudWatch Logs, which local mode does not stand in for.
    transformer.transform(
        f"file://{args['input']}",
        content_type=args["content_type"],
        split_type=args.get("split_type"),
        wait=False,
        logs=False,
    )
    job = session.sagemaker_client.describe_transform_job(transformer.latest_transform_job.name)
    return {"status": job["TransformJobStatus"], "batch_strategy": job["BatchStrategy"]}


STEPS = {"train": train, "predict": predict, "transform": transform}


def run(plan: dict) -> list[dict]:
    """Runs the plan's steps in order; stops at the first that fails and records why."""
    results: list[dict] = []
    model_data = plan.get("model_data")
    for step in plan["steps"]:
        args = {**plan, "model_data": model_data, **step}
        try:
            results.append({"step": step["step"], **STEPS[step["step"]](args)})
        except Exception:
            results.append({"step": step["step"], "error": traceback.format_exc()})
            break
        model_data = results[-1].get("model_data", model_data)
    return results


if __name__ == "__main__":
    result, plan = sys.argv[1:]
    results = run(json.loads(plan))
    Path(result).write_text(json.dumps(results, indent=1))
    # A step that failed with its container up leaves the SDK's (non-daemon) thread following that
    # container's log, which would keep this process alive; the caller removes the container.
    os._exit(1 if "error" in results[-1] else 0)
