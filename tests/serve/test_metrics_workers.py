"""/metrics with two worker processes: whichever worker answers a scrape, it reports the sum over both.

`serve` runs for real on the host: two uvicorn worker processes, uvloop and httptools, as in the image."""

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import wait_for_http
from tests.serve.conftest import load_pids, serve_process

REQUESTS = 24


@pytest.fixture
def two_workers(tiny_model_dir, tmp_path):
    with serve_process(tiny_model_dir, tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2", KENNEL_CPUS="2") as (
        _,
        base,
    ):
        # Both workers must have loaded the model, not just the first to answer a ping.
        wait_for_http(f"{base}/metrics", timeout=120, ok=lambda r: len(load_pids(r.text)) == 2)
        yield base


def invocations_200(text: str) -> float:
    match = re.search(
        r'^kennel_requests_total\{route="/invocations",status="200"\} (\S+)$', text, re.MULTILINE
    )
    return float(match.group(1)) if match else 0.0


def test_one_scrape_counts_the_requests_of_both_workers(two_workers, images):
    def predict(_: int) -> int:
        # A fresh connection each time, so the kernel may hand it to either worker.
        return httpx.post(
            f"{two_workers}/invocations",
            content=images["square.jpg"],
            headers={"Content-Type": "image/jpeg"},
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(predict, range(REQUESTS))) == [200] * REQUESTS

    # Scrapes land on either worker; each must report all the requests, not its own share.
    for _ in range(6):
        scrape = httpx.get(f"{two_workers}/metrics", timeout=30)
        assert scrape.status_code == 200
        assert invocations_200(scrape.text) == REQUESTS
        assert len(set(load_pids(scrape.text))) == 2
