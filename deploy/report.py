"""A training job's report: report.html and rules.json, fetched from the job's output.tar.gz in S3.

    python -m deploy report --stack my-stack.toml JOB                # ./kennel-reports/JOB/report.html
    python -m deploy report --stack my-stack.toml JOB --out ~/runs   # ~/runs/JOB/report.html

The training image writes both files into /opt/ml/output/data, which SageMaker uploads as
S3OutputPath/JOB/output/output.tar.gz when the job ends, failed or not. The page is self-contained: it
opens in any browser, offline.
"""

import argparse
import io
import tarfile
from pathlib import Path

from botocore.exceptions import ClientError

from deploy.aws import DeployError, Run, sagemaker_not_found

FILES = ("report.html", "rules.json")
DEFAULT_OUT = Path("kennel-reports")


def output_archive(run: Run, name: str) -> tuple[str, str]:
    """The bucket and key of the job's output.tar.gz."""
    try:
        described = run.client("sagemaker").describe_training_job(TrainingJobName=name)
    except ClientError as err:
        if sagemaker_not_found(err):
            raise DeployError(f"no training job named {name} in {run.stack.region}") from None
        raise
    if described["TrainingJobStatus"] == "InProgress":
        raise DeployError(f"training job {name} is still running: its report is uploaded when it ends")
    base = described["OutputDataConfig"]["S3OutputPath"].removeprefix("s3://").rstrip("/")
    bucket, _, prefix = base.partition("/")
    return bucket, "/".join(part for part in (prefix, name, "output", "output.tar.gz") if part)


def fetch(run: Run, name: str, out: Path) -> Path:
    """Downloads the job's report and rules.json into OUT/JOB/; returns the report's path."""
    bucket, key = output_archive(run, name)
    s3 = run.client("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise DeployError(f"training job {name} has no s3://{bucket}/{key}") from None
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        # Only the two files, by exact name and only as regular files: nothing else is written.
        members = {m.name.removeprefix("./"): m for m in archive.getmembers() if m.isfile()}
        for wanted in FILES:
            if wanted in members:
                (folder / wanted).write_bytes(archive.extractfile(members[wanted]).read())
    if not (folder / FILES[0]).is_file():
        raise DeployError(
            f"s3://{bucket}/{key} holds no report.html (a job from a training image without reports?)"
        )
    return folder / FILES[0]


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", metavar="JOB", help="a training job name")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where JOB/report.html goes (%(default)s)",
    )


def report(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy report --stack deploy/stack.example.toml JOB

    Fetches a finished training job's report.html (and rules.json) from its output.tar.gz and prints the
    report's local path. The report opens offline: curves, gradients, where the time went, the rules'
    findings, the test split's worst classes and confusions."""
    print(fetch(run, args.job, args.out))
    return 0
