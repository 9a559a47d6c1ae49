"""What the command line says when an AWS call fails: one line naming the call that failed, AWS's own
reason, and what to do next.

    deploy up: AWS call CreateEndpoint failed: ResourceLimitExceeded: ... An account quota is reached:
    raise it in Service Quotas or free capacity, then run `up` again: it picks up where it stopped

botocore's errors are turned into that line here and only here, at the command line's boundary
(deploy/cli.py); the resource modules let them rise. `--debug` prints the traceback as well.
"""

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
    WaiterError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

# Error codes by what the person running deploy can do about them.
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
BAD_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
}
THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
QUOTA = {"ResourceLimitExceeded", "LimitExceededException", "ServiceQuotaExceededException"}
BUSY = {"ResourceInUse", "ResourceInUseException", "ResourceConflictException", "ConflictException"}

CREDENTIALS_HINT = (
    "set AWS_PROFILE (after `aws configure` or `aws sso login`) or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY, then run the command again"
)


def rerun(command: str) -> str:
    """`up` and `down` converge: whatever a failed run left, the next run finishes or removes."""
    if command in ("up", "down"):
        return f"run `{command}` again: it picks up where it stopped"
    return f"run `{command}` again"


def _client_error(err: ClientError, command: str) -> str:
    error = err.response.get("Error", {})
    code, message = error.get("Code", "Unknown"), " ".join(error.get("Message", "").split())
    what = f"AWS call {err.operation_name} failed: {code}" + (f": {message}" if message else "")
    if code in DENIED:
        todo = (
            "the identity running deploy lacks this permission: grant it as docs/deploy.md's deployer "
            f"policy does, then {rerun(command)}"
        )
    elif code in BAD_CREDENTIALS:
        todo = f"AWS refused the credentials: {CREDENTIALS_HINT}"
    elif code in THROTTLED:
        todo = f"AWS is throttling the account's calls: wait a minute, then {rerun(command)}"
    elif code in QUOTA:
        todo = (
            f"an account quota is reached: raise it in Service Quotas or free capacity, then {rerun(command)}"
        )
    elif code in BUSY:
        todo = f"another change to the resource is under way: wait for it, then {rerun(command)}"
    else:
        todo = f"fix the cause AWS gives, then {rerun(command)}"
    return f"{what}. {todo[0].upper()}{todo[1:]}"


def explain(err: BaseException, command: str) -> str | None:
    """One line for a botocore error (None for anything else): what failed, then what to do."""
    if isinstance(err, ClientError):
        return _client_error(err, command)
    if isinstance(err, WaiterError):
        last = getattr(err, "last_response", None) or {}
        reason = last.get("Error", {}).get("Message") or err.kwargs.get("reason", "")
        return (
            f"waiting for {err.kwargs.get('name', 'a resource')} failed: {reason}. "
            f"`python -m deploy status` shows where it stands; {rerun(command)}"
        )
    if isinstance(err, NoCredentialsError | PartialCredentialsError | ProfileNotFound):
        return f"no usable AWS credentials ({err}): {CREDENTIALS_HINT}"
    if isinstance(err, SSOError | TokenRetrievalError | CredentialRetrievalError):
        return f"AWS credentials could not be loaded ({err}): {CREDENTIALS_HINT}"
    if isinstance(err, BotoConnectionError | HTTPClientError):
        return (
            f"AWS could not be reached ({err}): check the network, the stack's region and "
            f"AWS_ENDPOINT_URL if set, then {rerun(command)}"
        )
    if isinstance(err, BotoCoreError):
        return f"an AWS call failed ({err}): {rerun(command)}"
    return None
