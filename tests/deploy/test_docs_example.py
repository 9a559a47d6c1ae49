"""The boto3 example in docs/deploy.md runs, as written, against the stack `up` made in moto: the endpoint
answers what it is given to answer, and the Lambda answers what kennel_proxy/proxy.py itself replies to the
event the example sends (computed by the proxy with moto as its SageMaker runtime)."""

import base64
import json
import os
import urllib.request
from pathlib import Path

from deploy import lifecycle
from kennel_proxy.events import parse_event
from kennel_proxy.proxy import Proxy
from kennel_proxy.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
PREDICTIONS = {
    "predictions": [
        [
            {"label": "001.Affenpinscher", "index": 0, "probability": 0.91},
            {"label": "071.German_shepherd_dog", "index": 70, "probability": 0.05},
            {"label": "002.Afghan_hound", "index": 1, "probability": 0.02},
        ]
    ]
}


def example() -> str:
    text = DOCS.read_text()
    return text.split("<!-- boto3-example -->", 1)[1].split("```python", 1)[1].split("```", 1)[0]


def moto_api(base: str, path: str, body: dict) -> None:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).read()


def proxy_reply(event: dict) -> dict:
    """What the deployed proxy returns for `event`, from the proxy's own code."""
    settings = Settings.from_env({**os.environ, "SAGEMAKER_ENDPOINT_NAME": "kennel-endpoint"})
    return Proxy.from_settings(settings).answer(parse_event(event), "req-1").as_lambda_response()


def test_the_python_example_in_the_guide_runs(make_run, aws, session, tmp_path, monkeypatch, capsys):
    lifecycle.up(make_run())
    # moto reads InvokeEndpoint bodies as text: the stand-in photo is ASCII.
    image = b"a photo of an Affenpinscher"
    (tmp_path / "dog.jpg").write_bytes(image)
    answer = {"Body": json.dumps(PREDICTIONS), "ContentType": "application/json"}
    where = {"account_id": "123456789012", "region": "us-east-1"}
    moto_api(aws, "/moto-api/static/sagemaker/endpoint-results", where | {"results": [answer, answer]})
    event = {"image": base64.b64encode(image).decode(), "top_k": 3}
    reply = proxy_reply(event)
    assert (reply["statusCode"], json.loads(reply["body"])) == (200, PREDICTIONS)  # the endpoint's answer
    moto_api(
        aws,
        "/moto-api/static/lambda-simple/response",
        {"results": [json.dumps(reply)], "region": "us-east-1"},
    )
    sent: list[dict] = []
    session.events.register(
        "before-parameter-build.lambda.Invoke",
        lambda params, **kw: sent.append(json.loads(params["Payload"])),
    )

    monkeypatch.chdir(tmp_path)
    exec(compile(example(), str(DOCS), "exec"), {})

    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(PREDICTIONS)
    assert out[1] == f"200 {PREDICTIONS}"
    assert sent == [event]
