"""Kennel's Lambda proxy (handler `kennel_proxy.proxy.handler`): standard library and boto3 only.

deploy/function.py zips this package's top-level modules with kennel_common's strict JSON reader; the local
adapter and the page (local_adapter.py, page/) are for the local image (lambda/Dockerfile) and `deploy demo`.
lambda/README.md describes each module.
"""
