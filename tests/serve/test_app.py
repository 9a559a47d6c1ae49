"""The app around the model: /ping states, /execution-parameters, /metrics, timeouts, settings and logs."""

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from kennel_serve.batching import MicroBatcher
from kennel_serve.settings import MIB, Settings, SettingsError

from tests.serve.conftest import assert_error, serving, wait_until_loaded

GATED = """
import time
from pathlib import Path

def model_fn(model_dir):
    while not Path(model_dir, "release").exists():
        time.sleep(0.01)
    return "loaded"

def transform_fn(model, body, content_type, accept):
    time.sleep(float(body or 0))
    return model
"""


@pytest.fixture
def gated_dir(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(GATED)
    return tmp_path


def test_ping_is_503_with_a_reason_while_loading_then_200(gated_dir):
    with serving(gated_dir, wait=False) as client:
        response = client.get("/ping")
        assert response.status_code == 503
        assert response.json() == {"status": "loading", "reason": "the model is loading"}
        assert_error(client.post("/invocations", content=b"1"), 503, "model_not_ready")
        (gated_dir / "release").touch()
        wait_until_loaded(client)
        assert client.get("/ping").status_code == 200
        assert client.post("/invocations", content=b"0").text == "loaded"


def test_ping_is_503_naming_the_model_directory_when_there_is_no_model(tmp_path):
    with serving(tmp_path / "empty") as client:
        response = client.get("/ping")
        assert response.status_code == 503
        assert response.json()["status"] == "failed"
        assert "no manifest.json in the model directory" in response.json()["reason"]


BLOCKING = """
import time
from pathlib import Path

def model_fn(model_dir):
    return Path(model_dir)

def transform_fn(model, body, content_type, accept):
    (model / "started").touch()
    while not (model / "finish").exists():
        time.sleep(0.01)
    return "done"
"""


def test_ping_answers_while_every_inference_thread_is_busy(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(BLOCKING)
    with serving(tmp_path, cpus=1) as client, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.post, "/invocations", content=b"x")
        while not (tmp_path / "started").exists():
            assert not pending.done(), pending.result().text
            time.sleep(0.01)
        # The one handler thread is blocked; /ping and /metrics are answered from memory regardless.
        assert client.get("/ping").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert not pending.done()
        (tmp_path / "finish").touch()
        assert pending.result().text == "done"


def test_past_the_deadline_is_504(gated_dir):
    (gated_dir / "release").touch()
    with serving(gated_dir, timeout_s=0.2) as client:
        body = assert_error(client.post("/invocations", content=b"5"), 504, "timeout")
        assert "SAGEMAKER_MODEL_SERVER_TIMEOUT" in body["error"]


def test_execution_parameters_for_batch_transform(tiny_model_dir):
    with serving(tiny_model_dir, max_concurrent_transforms=4, max_payload_bytes=50 * MIB) as client:
        # SageMaker refuses MaxConcurrentTransforms x MaxPayloadInMB above 100.
        assert client.get("/execution-parameters").json() == {
            "MaxConcurrentTransforms": 4,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": 25,
        }


def test_metrics_count_requests_batches_and_load_time(tiny_client, images):
    tiny_client.post("/invocations", content=images["square.jpg"], headers={"Content-Type": "image/jpeg"})
    tiny_client.post("/invocations", content=b"x", headers={"Content-Type": "text/plain"})
    text = tiny_client.get("/metrics").text
    assert 'kennel_requests_total{route="/invocations",status="200"} 1.0' in text
    assert 'kennel_requests_total{route="/invocations",status="415"} 1.0' in text
    assert "kennel_batch_size_count 1.0" in text
    assert 'kennel_request_seconds_count{route="/invocations"} 2.0' in text
    # One request alone: nothing was left waiting when its batch started.
    assert "kennel_queue_depth 0.0" in text.splitlines()
    load = next(line for line in text.splitlines() if line.startswith("kennel_model_load_seconds "))
    runtime = tiny_client.app.state.model.runtime
    assert float(load.split()[1]) == pytest.approx(runtime.load_seconds, rel=1e-9)


def test_one_json_log_line_per_request_with_its_id(tiny_client, images, caplog):
    caplog.set_level(logging.INFO, logger="kennel_serve")
    headers = {"Content-Type": "image/jpeg", "X-Amzn-SageMaker-Inference-Id": "req-42"}
    tiny_client.post("/invocations", content=images["square.jpg"], headers=headers)
    records = [r for r in caplog.records if r.getMessage() == "request"]
    assert len(records) == 1
    assert (records[0].request_id, records[0].status, records[0].path) == ("req-42", 200, "/invocations")
    from kennel_serve.logs import JsonFormatter

    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "req-42" and line["status"] == 200 and line["message"] == "request"


def test_effective_settings_are_logged_once_at_start(tiny_model_dir, caplog):
    caplog.set_level(logging.INFO, logger="kennel_serve")
    with serving(tiny_model_dir, max_batch_size=4):
        pass
    lines = [r for r in caplog.records if r.getMessage() == "settings"]
    assert len(lines) == 1
    assert lines[0].settings["max_batch_size"] == 4
    assert lines[0].settings["model_dir"] == str(tiny_model_dir)


def test_settings_from_sagemaker_variables():
    settings = Settings.from_env(
        {
            "SAGEMAKER_BIND_TO_PORT": "9000",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "30",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
            "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "Application/JSONLines",
            "SAGEMAKER_BATCH": "true",
            "KENNEL_CPUS": "4",
        }
    )
    assert (settings.port, settings.workers, settings.timeout_s) == (9000, 2, 30.0)
    assert settings.max_payload_bytes == 20 * MIB
    assert settings.default_accept == "application/jsonlines"
    assert settings.batch_mode and settings.threads_per_worker == 2
    defaults = Settings.from_env({})
    assert (defaults.port, defaults.workers, defaults.timeout_s, defaults.top_k) == (8080, 1, 60.0, 5)
    assert defaults.default_accept == "application/json" and not defaults.batch_mode
    assert Settings.from_env({"SAGEMAKER_BATCH": "true"}).timeout_s == 600.0
    assert (defaults.max_batch_size, defaults.concurrent_batches) == (4, 1)
    assert Settings.from_env({"KENNEL_CONCURRENT_BATCHES": "3"}).concurrent_batches == 3


@pytest.mark.parametrize(
    "environ",
    [
        {"SAGEMAKER_BIND_TO_PORT": "http"},
        {"SAGEMAKER_MODEL_SERVER_WORKERS": "0"},
        {"KENNEL_CONCURRENT_BATCHES": "0"},
        {"KENNEL_CONCURRENT_BATCHES": "many"},
        {"KENNEL_MAX_BATCH_SIZE": "0"},
    ],
)
def test_bad_settings_name_the_variable(environ):
    with pytest.raises(SettingsError, match=next(iter(environ))):
        Settings.from_env(environ)


def test_micro_batcher_joins_concurrent_requests_and_answers_each():
    sizes = []

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return batch * 2

    async def scenario():
        # A long delay, so that all eight are queued together; a full batch does not wait for the delay.
        batcher = MicroBatcher(predict, max_batch_size=8, max_delay_s=30.0)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.array([i])) for i in range(8)))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert sizes == [8]
    assert [int(r[0]) for r in results] == [i * 2 for i in range(8)]


def test_micro_batcher_splits_at_the_maximum_and_sends_a_lone_request_alone():
    sizes = []

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return batch

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, max_delay_s=0.0)
        batcher.start()
        await asyncio.gather(*(batcher.submit(np.array([i])) for i in range(10)))
        await batcher.submit(np.array([0]))
        await batcher.stop()

    asyncio.run(scenario())
    assert sizes == [4, 4, 2, 1]


def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on():
    calls = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return batch

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, max_delay_s=0.0)
        batcher.start()
        with pytest.raises(RuntimeError, match="model exploded"):
            await batcher.submit(np.array([1]))
        result = await batcher.submit(np.array([2]))
        await batcher.stop()
        return result

    assert int(asyncio.run(scenario())[0]) == 2


def test_a_lone_item_runs_at_once_on_the_callers_thread_when_the_model_is_idle():
    calls, sizes = [], []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(threading.current_thread().name)
        return batch * 3

    batcher = MicroBatcher(predict, max_batch_size=4, max_delay_s=0.0, on_batch=sizes.append)
    result = batcher.run_now(np.array([5]))
    assert int(result[0]) == 15 and sizes == [1]
    assert calls == [threading.current_thread().name]
    # A batching delay asks requests to wait for each other: no short cut then.
    assert MicroBatcher(predict, max_batch_size=4, max_delay_s=0.01).run_now(np.array([5])) is None


def test_no_short_cut_while_another_item_waits_for_the_model():
    running, release, answers = threading.Event(), threading.Event(), []

    def predict(batch: np.ndarray) -> np.ndarray:
        running.set()
        release.wait(timeout=30)
        return batch

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, max_delay_s=0.0)
        batcher.start()
        pending = asyncio.ensure_future(batcher.submit(np.array([1])))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, running.wait, 30)
        # The submitted item's batch holds the model: a lone item from another thread must queue instead.
        answers.append(await loop.run_in_executor(None, batcher.run_now, np.array([2])))
        release.set()
        await pending
        # Once that batch is answered, the model is idle again.
        answers.append(await loop.run_in_executor(None, batcher.run_now, np.array([3])))
        await batcher.stop()

    asyncio.run(scenario())
    assert answers[0] is None and int(answers[1][0]) == 3


def test_two_batches_run_at_once_when_asked_and_each_request_gets_its_own_answer():
    both_running = threading.Barrier(2, timeout=30)
    sizes = []

    def predict(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        both_running.wait()  # breaks (and fails the batch) unless a second batch runs meanwhile
        return batch * 10

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=2, max_delay_s=0.0, concurrency=2)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(np.array([i])) for i in range(4)))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert sorted(sizes) == [2, 2]
    assert [int(r[0]) for r in results] == [0, 10, 20, 30]
