"""`python -m deploy demo`: the page to try the model, on 127.0.0.1, against the deployed stack.

    python -m deploy demo --stack my-stack.toml              # through the Lambda's function URL
    python -m deploy demo --stack my-stack.toml --direct     # straight to the endpoint (InvokeEndpoint)
    python -m deploy demo --stack my-stack.toml --port 0     # any free port

It serves the page the local stack serves (kennel_proxy/page/) and sends each photo to AWS with your own
credentials (boto3's usual chain): to the function URL, which stays AWS_IAM, signed here with SigV4 by
botocore's signer; or, with --direct, to sagemaker-runtime InvokeEndpoint. Nothing on AWS becomes public
and the credentials never reach the browser, which talks only to this server. The server answers only
its own origin: a request from another site, or under another host name, is refused before anything is
signed. The model panel reads manifest.json (and report.html, if there is one) from the archive the
endpoint serves, in S3.
"""

import argparse
import json
import tarfile
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError
from botocore.httpsession import URLLib3Session
from botocore.utils import get_environ_proxies

from deploy import function
from deploy.aws import DeployError, Run
from kennel_proxy import page

MAX_BODY_BYTES = 6 * 1024 * 1024  # what a function URL and InvokeEndpoint take
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_REPORT_BYTES = 64 * 1024 * 1024
PASSED_HEADERS = ("Content-Type", "X-Kennel-Precision", "X-Request-Id", "Retry-After")
# The training report is the training image's own page: its inline script and style, nothing from outside.
REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "sandbox allow-scripts; base-uri 'none'; form-action 'none'"
)

Answer = tuple[int, dict[str, str], bytes]


def json_answer(status: int, body: dict, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def refusal(status: int, type_: str, message: str) -> Answer:
    return json_answer(status, {"error": message, "type": type_})


class Target(Protocol):
    def send(self, body: bytes, content_type: str, query: str) -> Answer: ...


@dataclass
class FunctionUrl:
    """The Lambda's function URL (AWS_IAM auth): each request signed with SigV4 for the `lambda` service."""

    url: str
    session: boto3.Session
    region: str
    http: URLLib3Session = field(init=False)

    def __post_init__(self) -> None:
        # botocore's own HTTP session, with the HTTPS_PROXY / NO_PROXY a boto3 client would use.
        self.http = URLLib3Session(timeout=60, proxies=get_environ_proxies(self.url))

    def send(self, body: bytes, content_type: str, query: str) -> Answer:
        credentials = self.session.get_credentials()
        if credentials is None:
            return refusal(401, "no_credentials", "no AWS credentials found (AWS_PROFILE, environment, ...)")
        request = AWSRequest(
            method="POST",
            url=self.url.rstrip("/") + "/" + (f"?{query}" if query else ""),
            data=body,
            headers={"Content-Type": content_type},
        )
        SigV4Auth(credentials.get_frozen_credentials(), "lambda", self.region).add_auth(request)
        try:
            response = self.http.send(request.prepare())
        except BotoCoreError as err:
            return refusal(502, "function_url_unreachable", f"the function URL could not be reached: {err}")
        headers = {name: response.headers[name] for name in PASSED_HEADERS if name in response.headers}
        return response.status_code, headers, response.content


@dataclass
class Endpoint:
    """The SageMaker endpoint itself, with sagemaker-runtime InvokeEndpoint."""

    name: str
    client: Any

    def send(self, body: bytes, content_type: str, query: str) -> Answer:
        if not (content_type.startswith("image/") or content_type == "application/x-image"):
            return refusal(
                415,
                "unsupported_media_type",
                "send an image; photo addresses are fetched by the Lambda, so run the demo without --direct",
            )
        top_k = parse_qs(query).get("top_k", ["5"])[0]
        if not top_k.isdigit() or not 1 <= int(top_k) <= 1000:
            return refusal(400, "invalid_top_k", "top_k must be an integer from 1 to 1000")
        try:
            answer = self.client.invoke_endpoint(
                EndpointName=self.name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
                CustomAttributes=f"top_k={top_k}",
            )
            data = answer["Body"].read()
        except ClientError as err:
            return endpoint_error(err)
        except BotoCoreError as err:
            return refusal(502, "endpoint_unreachable", f"the endpoint could not be reached: {err}")
        headers = {"X-Request-Id": answer.get("ResponseMetadata", {}).get("RequestId", "")}
        precision = precision_of(answer.get("CustomAttributes"))
        if precision:
            headers["X-Kennel-Precision"] = precision
        return 200, {"Content-Type": "application/json", **headers}, data


def precision_of(custom_attributes: str | None) -> str | None:
    """`precision=int8` from the endpoint's response custom attributes, as the Lambda reads it
    (lambda/endpoint.py's precision_of)."""
    for item in (custom_attributes or "").replace(";", ",").split(","):
        name, _, value = item.strip().partition("=")
        if name == "precision" and 0 < len(value) <= 16 and value.isascii() and value.isalnum():
            return value if value == value.lower() else None
    return None


def endpoint_error(err: ClientError) -> Answer:
    """InvokeEndpoint's failure as the page reads any error: {"error", "type", "model_error"}. These are
    the caller's own credentials and endpoint, so AWS's message is shown as it is."""
    response = err.response
    error = response.get("Error", {})
    request_id = response.get("ResponseMetadata", {}).get("RequestId", "")
    if error.get("Code") == "ModelError":
        status = response.get("OriginalStatusCode")
        try:
            model_error = json.loads(response.get("OriginalMessage", ""))
        except ValueError:
            model_error = response.get("OriginalMessage", "")
        rejected = isinstance(status, int) and 400 <= status < 500
        body = {
            "error": "the model rejected the input" if rejected else "the model failed to answer",
            "type": "model_rejected_input" if rejected else "model_error",
            "model_error": model_error,
            "request_id": request_id,
        }
        return json_answer(status if rejected else 502, body, {"X-Request-Id": request_id})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 502
    body = {
        "error": f"{error.get('Code')}: {error.get('Message')}",
        "type": "aws_error",
        "request_id": request_id,
    }
    return json_answer(status if 400 <= status < 600 else 502, body, {"X-Request-Id": request_id})


@dataclass
class ModelCard:
    """manifest.json and report.html from the model archive (model.tar.gz) the endpoint serves; read once,
    the first time the page asks, streaming the archive rather than keeping it."""

    run: Run
    card: dict | None = None
    report: bytes | None = None

    def answer(self) -> Answer:
        if self.card is None:
            try:
                self._read()
            except (ClientError, BotoCoreError, DeployError, tarfile.TarError, ValueError) as err:
                return refusal(502, "model_card_unavailable", f"the model's manifest cannot be read: {err}")
        return json_answer(200, self.card)

    def _read(self) -> None:
        sagemaker, stack = self.run.client("sagemaker"), self.run.stack
        config = sagemaker.describe_endpoint(EndpointName=stack.endpoint_name)["EndpointConfigName"]
        variant = sagemaker.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0]
        url = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]["ModelDataUrl"]
        bucket, _, key = url.removeprefix("s3://").partition("/")
        body = self.run.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        manifest = None
        with tarfile.open(fileobj=body, mode="r|gz") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if name == "manifest.json" and member.size <= MAX_MANIFEST_BYTES:
                    manifest = json.loads(archive.extractfile(member).read())
                elif name == "report.html" and member.size <= MAX_REPORT_BYTES:
                    self.report = archive.extractfile(member).read()
                if manifest is not None and self.report is not None:
                    break
        if not isinstance(manifest, dict):
            raise DeployError(f"{url} has no manifest.json")
        report = "model/report" if self.report is not None else None
        self.card = {"manifest": manifest, "precision": None, "report": report}


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, target: Target, card: ModelCard | None) -> None:
        super().__init__(("127.0.0.1", port), DemoHandler)
        self.target, self.card = target, card

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class DemoHandler(page.AnswerHandler):
    server: DemoServer
    server_version = "kennel-demo"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._own_origin():
            return
        if path == "/":
            self._send(*page.page())
        elif path == "/model" and self.server.card is not None:
            self._send(*self.server.card.answer())
        elif path == "/model/report" and self.server.card is not None and self.server.card.report is not None:
            headers = {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": REPORT_CSP}
            self._send(200, headers, self.server.card.report)
        else:
            self._send(*refusal(404, "not_found", "the demo serves /, /model and POST /"))

    def do_POST(self) -> None:
        if not self._own_origin():
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return self._send(*refusal(411, "length_required", "send the body with a Content-Length"))
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            return self._send(
                *refusal(413, "request_too_large", f"the request must be at most {MAX_BODY_BYTES} bytes")
            )
        body = self.rfile.read(int(length))
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        try:
            answer = self.server.target.send(body, content_type, urlsplit(self.path).query)
        except Exception as err:  # never take the demo down; say what happened
            answer = refusal(500, "demo_failed", f"the demo failed on this request: {err!r}")
        self._send(*answer)

    def _own_origin(self) -> bool:
        """Only the page itself may use this server: the Host must be ours (no DNS rebinding), and a
        browser's Origin, when it sends one, too (no other site's page posting photos to sign)."""
        origin = self.headers.get("Origin")
        host_ok = f"http://{self.headers.get('Host', '')}" == self.server.origin
        if host_ok and (origin is None or origin == self.server.origin):
            return True
        self.close_connection = True
        self._send(
            *refusal(403, "foreign_origin", f"only the page at {self.server.origin}/ may use the demo")
        )
        return False

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the command prints where to look, and errors reach the page."""


def function_url(run: Run) -> str:
    lambda_ = run.client("lambda")
    try:
        config = lambda_.get_function_url_config(
            FunctionName=run.stack.function_name, Qualifier=function.ALIAS
        )
    except lambda_.exceptions.ResourceNotFoundException:
        raise DeployError(
            f"{run.stack.function_name}:{function.ALIAS} has no function URL: set lambda.function_url = true "
            "and run `up`, or use --direct"
        ) from None
    return config["FunctionUrl"]


def target(run: Run, direct: bool) -> Target:
    if direct:
        return Endpoint(run.stack.endpoint_name, run.client("sagemaker-runtime"))
    return FunctionUrl(function_url(run), boto3.Session(region_name=run.stack.region), run.stack.region)


def demo(args: argparse.Namespace, run: Run) -> int:
    """python -m deploy demo --stack deploy/stack.example.toml [--direct] [--port 8765]

    Serves the page to try the model on 127.0.0.1, sending its photos to the stack with your own AWS
    credentials: through the Lambda's function URL (SigV4-signed), or straight to the endpoint."""
    server = DemoServer(args.port, target(run, args.direct), ModelCard(run))
    way = (
        f"endpoint {run.stack.endpoint_name}" if args.direct else f"function URL of {run.stack.function_name}"
    )
    print(f"demo: open {server.origin}/ (photos go to the {way}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--direct", action="store_true", help="call the endpoint, not the Lambda")
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free one)")
