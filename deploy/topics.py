"""The SNS topics an async endpoint notifies when a request succeeds or fails (`[endpoint.async]`
success_topic and error_topic). `up` creates the ones the stack asks for and removes the others; `down`
removes both. Subscribe to them yourself (email, SQS, a Lambda): subscriptions are not Kennel's to own."""

from deploy.aws import Run
from deploy.stack import Stack


def success_topic(stack: Stack) -> str:
    return f"{stack.name}-async-success"


def error_topic(stack: Stack) -> str:
    return f"{stack.name}-async-errors"


def topic_arn(run: Run, name: str) -> str:
    return run.arn("sns", name)


def wanted(stack: Stack) -> list[str]:
    """The topic names the stack asks for (none unless the endpoint is async)."""
    settings = stack.endpoint.async_inference
    if settings is None:
        return []
    return [
        name
        for name, on in (
            (success_topic(stack), settings.success_topic),
            (error_topic(stack), settings.error_topic),
        )
        if on
    ]


def exists(run: Run, name: str) -> bool:
    sns = run.client("sns")
    try:
        sns.get_topic_attributes(TopicArn=topic_arn(run, name))
        return True
    except sns.exceptions.NotFoundException:
        return False


def ensure_topics(run: Run) -> None:
    keep = wanted(run.stack)
    for name in keep:
        if exists(run, name):
            run.apply("sns topic", name, "unchanged")
        elif run.apply("sns topic", name, "create"):
            run.client("sns").create_topic(Name=name, Tags=run.tag_list())
    delete_topics(run, keep=keep)


def delete_topics(run: Run, keep: list[str] | None = None) -> None:
    for name in (success_topic(run.stack), error_topic(run.stack)):
        if name not in (keep or []) and exists(run, name) and run.apply("sns topic", name, "delete"):
            run.client("sns").delete_topic(TopicArn=topic_arn(run, name))
