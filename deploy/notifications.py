"""The SNS topic the alarms notify, `NAME-alarms`, with an e-mail subscription: only when the stack's
`[alarms]` table sets `email`.

    python -m deploy up --stack my-stack.toml      # then confirm the subscription from the e-mail AWS sends

A subscription stays "pending confirmation" until its owner clicks the link; `status` says which.
Deleting the topic deletes its subscriptions with it.
"""

import contextlib

from deploy import topics
from deploy.aws import Run

PENDING = "PendingConfirmation"


def topic_name(run: Run) -> str:
    return f"{run.stack.name}-alarms"


def topic_arn(run: Run) -> str:
    return topics.topic_arn(run, topic_name(run))


def _exists(run: Run) -> bool:
    return topics.exists(run, topic_name(run))


def _email_subscriptions(run: Run) -> list[dict]:
    pages = run.client("sns").get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn(run))
    return [s for page in pages for s in page["Subscriptions"] if s["Protocol"] == "email"]


def ensure_topic(run: Run) -> None:
    """A changed address replaces the topic (same name and ARN, so the alarms' actions stay right):
    unsubscribing the old address would need sns:Unsubscribe on every subscription in the account."""
    sns, email, name = run.client("sns"), run.stack.alarms.email, topic_name(run)
    exists = _exists(run)
    if email is None:
        if exists and run.apply("sns topic", name, "delete", "no alarms.email"):
            sns.delete_topic(TopicArn=topic_arn(run))
        return
    endpoints = {s["Endpoint"] for s in _email_subscriptions(run)} if exists else set()
    others = sorted(endpoints - {email})
    if exists and not others:
        run.apply("sns topic", name, "unchanged")
    elif run.apply(
        "sns topic",
        name,
        "update" if exists else "create",
        f"replacing {', '.join(others)}" if others else "",
    ):
        if exists:
            sns.delete_topic(TopicArn=topic_arn(run))
        sns.create_topic(Name=name, Tags=run.tag_list())
    label = f"{name} -> {email}"
    if email in endpoints and not others:
        run.apply("sns subscription", label, "unchanged")
    elif run.apply("sns subscription", label, "create", "the owner must confirm it from the e-mail"):
        sns.subscribe(TopicArn=topic_arn(run), Protocol="email", Endpoint=email)


def delete_topic(run: Run) -> None:
    sns = run.client("sns")
    if not _exists(run) or not run.apply("sns topic", topic_name(run), "delete"):
        return
    with contextlib.suppress(sns.exceptions.NotFoundException):
        sns.delete_topic(TopicArn=topic_arn(run))


def status(run: Run) -> list[str]:
    if not _exists(run):
        return []
    lines = [f"  notifications: {topic_arn(run)}"]
    for s in _email_subscriptions(run):
        state = "pending confirmation" if s["SubscriptionArn"] == PENDING else "confirmed"
        lines.append(f"    e-mail {s['Endpoint']}: {state}")
    return lines
