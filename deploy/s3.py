"""The stack's bucket and the model archive: `model.tar.gz` of a local model directory, or a training
job's output. Archives are byte-for-byte reproducible and stored under their content hash, so a second
`up` with the same model uploads nothing."""

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from botocore.exceptions import ClientError

from deploy.aws import DeployError, Run

PRIVATE = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def ensure_bucket(run: Run) -> None:
    """Creates the bucket if needed, private and tagged. An existing bucket gets whichever of the two it
    lacks (a run that failed right after creating it left it without them); tags of its own stay. `down`
    leaves the bucket: it also holds training data."""
    s3, bucket, wanted = run.client("s3"), run.stack.bucket, run.stack.all_tags()
    try:
        s3.head_bucket(Bucket=bucket)
        current = _tags(run)
    except ClientError as err:
        if not _head_not_found(err):
            raise
        current = None
    tagged = current is not None and all(current.get(k) == v for k, v in wanted.items())
    if tagged and _is_private(run):
        run.apply("s3 bucket", bucket, "unchanged")
        return
    if not run.apply("s3 bucket", bucket, "create" if current is None else "update", "private, tagged"):
        return
    if current is None:
        where = {} if run.stack.region == "us-east-1" else {"LocationConstraint": run.stack.region}
        s3.create_bucket(Bucket=bucket, **({"CreateBucketConfiguration": where} if where else {}))
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PRIVATE)
    tags = {**(current or {}), **wanted}
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
    )


def _is_private(run: Run) -> bool:
    s3 = run.client("s3")
    try:
        block = s3.get_public_access_block(Bucket=run.stack.bucket)["PublicAccessBlockConfiguration"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchPublicAccessBlockConfiguration":
            raise
        return False
    return block == PRIVATE


def _tags(run: Run) -> dict[str, str]:
    s3 = run.client("s3")
    try:
        tag_set = s3.get_bucket_tagging(Bucket=run.stack.bucket)["TagSet"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "NoSuchTagSet":
            raise
        return {}
    return {t["Key"]: t["Value"] for t in tag_set}


def _head_not_found(err: ClientError) -> bool:
    """A HEAD answer has no body, so S3 cannot send the modeled NoSuchBucket or NoSuchKey: only the
    status, which botocore reports as the code "404"."""
    return err.response.get("Error", {}).get("Code") == "404"


def archive(model_dir: Path) -> bytes:
    """model.tar.gz with sorted entries and zeroed times and owners: same files, same bytes."""
    if not (model_dir / "manifest.json").is_file():
        raise DeployError(
            f"{model_dir} is not a model directory (no manifest.json; see docs/model-format.md)"
        )
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(path.relative_to(model_dir).as_posix())
            info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
            with path.open("rb") as fh:
                tar.addfile(info, fh)
    return gzip.compress(raw.getvalue(), mtime=0)


def model_key(run: Run, data: bytes) -> str:
    return f"{run.stack.prefix}/models/{hashlib.sha256(data).hexdigest()[:16]}/model.tar.gz"


def ensure_model_data(run: Run) -> str:
    """The S3 URI of the model archive the endpoint serves."""
    stack = run.stack
    if stack.model.training_job:
        return training_output(run, stack.model.training_job)
    return upload_model_dir(run, stack.model.dir, run.model_archive)


def upload_model_dir(run: Run, model_dir: Path, data: bytes | None = None) -> str:
    """The S3 URI of `model_dir`'s archive (`data`, when the caller has made it), uploaded unless the same
    bytes are there already."""
    stack = run.stack
    data = archive(model_dir) if data is None else data
    key = model_key(run, data)
    s3 = run.client("s3")
    try:
        s3.head_object(Bucket=stack.bucket, Key=key)
        run.apply("s3 model archive", key, "unchanged")
    except ClientError as err:
        if not _head_not_found(err):
            raise
        if run.apply("s3 model archive", key, "create", f"{len(data) / 1e6:.1f} MB from {model_dir}"):
            s3.put_object(Bucket=stack.bucket, Key=key, Body=data, Tagging="project=kennel")
    return f"s3://{stack.bucket}/{key}"


def training_output(run: Run, job: str) -> str:
    try:
        described = run.client("sagemaker").describe_training_job(TrainingJobName=job)
    except ClientError as err:
        raise DeployError(f"model.training_job {job!r} cannot be read", str(err)) from err
    if described["TrainingJobStatus"] != "Completed":
        raise DeployError(
            f"training job {job} is {described['TrainingJobStatus']}", described.get("FailureReason")
        )
    return described["ModelArtifacts"]["S3ModelArtifacts"]


def delete_model_data(run: Run) -> None:
    """Removes the archives `up` uploaded (the models/ prefix); training outputs and data stay."""
    s3, stack = run.client("s3"), run.stack
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=stack.bucket, Prefix=f"{stack.prefix}/models/"
        )
        keys = [obj["Key"] for page in pages for obj in page.get("Contents", [])]
    except s3.exceptions.NoSuchBucket:
        return
    for key in keys:
        if run.apply("s3 model archive", key, "delete"):
            s3.delete_object(Bucket=stack.bucket, Key=key)
