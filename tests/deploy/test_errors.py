"""Every command, run with no AWS credentials or with AWS out of reach, ends with one line that says
what failed and what to do, and a non-zero status; never a traceback, unless --debug asks for one."""

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, WaiterError

from deploy import cli, data, errors, lifecycle
from tests.conftest import free_port
from tests.deploy.test_data import image_bytes


def argv(command: str, stack: Path, tmp_path: Path) -> list[str]:
    """`command`'s arguments, each valid, so that the command gets as far as its first AWS call."""
    image = tmp_path / "dog.jpg"
    image.write_bytes(image_bytes((120, 80, 40)))
    dataset = tmp_path / "dogImages"
    for split in data.SPLITS:
        for breed in ("001.Affenpinscher", "002.Afghan_hound"):
            (dataset / split / breed).mkdir(parents=True, exist_ok=True)
            (dataset / split / breed / "a.jpg").write_bytes(image_bytes((10, 20, 30)))
    extra = {
        "invoke": [str(image)],
        "data": ["push", str(dataset)],
        "follow": ["kennel-train0101120000"],
        "stop": ["kennel-train0101120000"],
        "report": ["kennel-train0101120000"],
        "trials": ["kennel-tune0101120000"],
        "promote": ["kennel-tune0101120000"],
        "models": ["list"],
        "transform": ["photos/", "run1/"],
        "loadtest": ["--endpoint", "--image", str(image), "--p99-ms", "500", "--max-seconds", "1"],
    }
    return [command, "--stack", str(stack), *extra.get(command, [])]


@pytest.fixture
def no_credentials(monkeypatch, session):
    """No key in the environment or files, no profile, and no instance metadata service to ask."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def unreachable(monkeypatch, session):
    """AWS_ENDPOINT_URL at a loopback port that nothing listens on."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")


def one_line_failure(capsys, argv: list[str]) -> str:
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status != 0, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("loadtest: ")]
    assert len(lines) == 1 and lines[0].startswith(f"deploy {argv[0]}: "), err
    return lines[0]


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_without_credentials_every_command_says_so_in_one_line(
    command, stack_file, tmp_path, capsys, no_credentials
):
    line = one_line_failure(capsys, argv(command, stack_file, tmp_path))
    assert "no usable AWS credentials" in line and "AWS_PROFILE" in line, line


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_with_aws_out_of_reach_every_command_says_so_in_one_line(
    command, stack_file, tmp_path, capsys, unreachable
):
    line = one_line_failure(capsys, argv(command, stack_file, tmp_path))
    assert "AWS could not be reached" in line and "AWS_ENDPOINT_URL" in line, line


def test_debug_adds_the_traceback(stack_file, tmp_path, capsys, unreachable):
    assert cli.main(["status", "--stack", str(stack_file), "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "EndpointConnectionError" in err
    assert err.splitlines()[-1].startswith("deploy status: AWS could not be reached")


def test_a_refused_call_names_the_operation_the_reason_and_the_deployer_policy(stack_file, capsys, session):
    def deny(model, **kwargs):
        if model.name == "CreateBucket":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not\nallowed"}}, model.name)

    session.events.register("before-call.s3.CreateBucket", deny)
    line = one_line_failure(capsys, ["up", "--stack", str(stack_file)])
    assert line == (
        "deploy up: AWS call CreateBucket failed: AccessDenied: not allowed. The identity running deploy "
        "lacks this permission: grant it as docs/deploy.md's deployer policy does, then run `up` again: "
        "it picks up where it stopped"
    )


def test_a_waiter_that_gives_up_points_at_status():
    err = WaiterError("EndpointInService", "Max attempts exceeded", {"Error": {"Message": "still Creating"}})
    line = errors.explain(err, "up")
    assert line == (
        "waiting for EndpointInService failed: still Creating. `python -m deploy status` shows where it "
        "stands; run `up` again: it picks up where it stopped"
    )


def test_an_error_of_our_own_keeps_its_traceback(stack_file, monkeypatch):
    def broken(run):
        raise ZeroDivisionError("a bug, not an AWS error")

    monkeypatch.setattr(lifecycle, "status", broken)
    with pytest.raises(ZeroDivisionError):
        cli.main(["status", "--stack", str(stack_file)])
