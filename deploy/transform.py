"""Batch transform: the serving image and the model the endpoint serves, over images or JSON Lines in S3.

    python -m deploy transform --stack my-stack.toml photos/ run1/
    python -m deploy transform --stack my-stack.toml \\
        s3://BUCKET/PREFIX/transform/input/photos/ s3://BUCKET/PREFIX/transform/output/run1/

INPUT_PREFIX lies under s3://BUCKET/PREFIX/transform/input/ and OUTPUT_PREFIX under .../transform/output/,
the prefixes the model's role may read and write (a relative name is taken under them). The stack's
[transform] table sets instances, content type, payload size and concurrency. The job is followed to its
end; the summary counts records and lists inputs that have no result. SageMaker writes one result per
input object, named like it with ".out" appended.
"""

import time
from dataclasses import dataclass

from deploy import endpoint
from deploy.aws import DeployError, Run
from deploy.data import remote_objects


@dataclass(frozen=True)
class Summary:
    job: str
    inputs: int
    outputs: int
    records: int
    missing: list[str]
    output_uri: str

    def lines(self) -> list[str]:
        lines = [
            f"{self.job}: {self.inputs} input object(s), {self.outputs} result file(s),"
            f" {self.records} record(s)",
            f"results: {self.output_uri}",
        ]
        if self.missing:
            shown = ", ".join(self.missing[:10]) + (" ..." if len(self.missing) > 10 else "")
            lines.append(f"{len(self.missing)} input(s) without a result: {shown}")
        return lines


def resolve(run: Run, given: str, kind: str) -> str:
    """The S3 URI (ending in /) of an input or output prefix, which must lie where the role may go."""
    base = run.stack.s3_uri("transform", kind) + "/"
    uri = given if given.startswith("s3://") else base + given.lstrip("/")
    uri = uri.rstrip("/") + "/"
    if not uri.startswith(base) or uri == base:
        raise DeployError(
            f"{kind} prefix {given!r} must be a folder under {base}: the model's role may only"
            f" {'read' if kind == 'input' else 'write'} there (aws s3 sync DIR {base}NAME/)"
        )
    return uri


def served_model(run: Run) -> str:
    described = endpoint.describe(run)
    if described is None:
        raise DeployError(
            f"endpoint {run.stack.endpoint_name} is absent: run `python -m deploy up` first;"
            " transform runs the model the endpoint serves"
        )
    config = run.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"]
    )
    return config["ProductionVariants"][0]["ModelName"]


def start(run: Run, input_uri: str, output_uri: str) -> str:
    stack, transform = run.stack, run.stack.transform
    if transform is None:
        raise DeployError(
            "the stack has no [transform] table: add one (see deploy/stack.example.toml) and run `up`,"
            " which lets the model's role read the input and write the output"
        )
    name = f"{stack.name}-transform{time.strftime('%m%d%H%M%S', time.gmtime())}"
    jsonlines = transform.split_type == "Line"
    run.client("sagemaker").create_transform_job(
        TransformJobName=name,
        ModelName=served_model(run),
        MaxConcurrentTransforms=transform.max_concurrent_transforms,
        MaxPayloadInMB=transform.max_payload_mb,
        BatchStrategy=transform.batch_strategy,
        # The serving image refuses bodies over this size; tell it what SageMaker will send.
        Environment={"SAGEMAKER_MAX_PAYLOAD_IN_MB": str(transform.max_payload_mb)},
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": transform.content_type,
            "SplitType": transform.split_type,
            "CompressionType": "None",
        },
        TransformOutput={
            "S3OutputPath": output_uri,
            "Accept": "application/jsonlines" if jsonlines else "application/json",
            "AssembleWith": "Line" if jsonlines else "None",
        },
        TransformResources={
            "InstanceType": transform.instance_type,
            "InstanceCount": transform.instance_count,
        },
        Tags=run.tag_list(),
    )
    return name


def summarise(run: Run, name: str, input_uri: str, output_uri: str) -> Summary:
    """Counts inputs, results and records: one per image result, one per line of a JSON Lines result
    (only those are read)."""
    bucket_part = f"s3://{run.stack.bucket}/"
    input_prefix, output_prefix = input_uri[len(bucket_part) :], output_uri[len(bucket_part) :]
    inputs, outputs = remote_objects(run, input_prefix), remote_objects(run, output_prefix)
    records = len(outputs)
    if run.stack.transform and run.stack.transform.split_type == "Line":
        s3, records = run.client("s3"), 0
        for key in outputs:
            body = s3.get_object(Bucket=run.stack.bucket, Key=output_prefix + key)["Body"]
            records += sum(1 for line in body.iter_lines() if line.strip())
    missing = sorted(key for key in inputs if f"{key}.out" not in outputs)
    return Summary(name, len(inputs), len(outputs), records, missing, output_uri)
