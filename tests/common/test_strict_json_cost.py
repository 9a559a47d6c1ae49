"""The strict-JSON reader's cost is linear in the body for every shape an attacker can send, and one file
serves both the serving image and the Lambda.

Times are compared only with each other, in one run: time(4 MB) / time(1 MB) per shape (linear gives about
4, quadratic 16), and every 6 MB body against `json.loads` on a valid 6 MB request. They are the process's
CPU time, the fastest of several tries measured alternately, so that other work on the machine does not
count."""

import contextlib
import io
import json
import re
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from kennel_common import strict_json
from kennel_common.strict_json import JsonRefused
from tests.common.hostile_json import SHAPES

MB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


def read(body: bytes) -> None:
    with contextlib.suppress(JsonRefused):
        strict_json.loads(body)


def fastest(work: Callable[[], object], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def growth(reader: Callable[[bytes], None], shape: Callable[[int], str], small: int) -> float:
    """time(4 x small) / time(small), each the fastest of seven, measured alternately."""
    small_body = shape(small).encode()
    return cost_ratio(reader, shape(4 * small).encode(), lambda: reader(small_body), rounds=7)


@pytest.mark.parametrize("name", SHAPES)
def test_reading_grows_linearly_with_the_body(name):
    assert growth(read, SHAPES[name], MB) < 8, f"{name}: superlinear"


def test_the_growth_test_catches_the_quadratic_scan_it_replaced():
    """The pattern that emptied strings before: it cannot match an unterminated string, so re.sub tries again
    from every later quote. Small bodies, because it is quadratic."""
    old = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)

    def old_scan(body: bytes) -> None:
        old.sub('""', body.decode())

    assert growth(old_scan, SHAPES["unterminated string of escaped quotes"], 2048) > 8


def test_every_6_mb_shape_is_read_in_under_20_times_json_loads_on_a_valid_6_mb_request():
    """The valid request is one string of escaped quotes: the 6 MB request that `json.loads` itself works
    hardest on. A base64 image is a poor yardstick: its `json.loads` is mostly the allocator's page faults,
    and measured 2.7 to 12 ms in one process, depending on what the process had freed before."""
    valid = json.dumps({"instances": [{"b64": 'a"' * (2 * MB)}]}).encode()
    assert len(valid) >= 6 * MB
    for name, shape in SHAPES.items():
        ratio = cost_ratio(read, shape(6 * MB).encode(), lambda: json.loads(valid))
        assert ratio < 20, f"{name}: {ratio:.1f} x json.loads on a valid request"


def cost_ratio(
    reader: Callable[[bytes], None], body: bytes, yardstick: Callable[[], object], rounds: int = 5
) -> float:
    """time(reader(body)) / time(yardstick()), each the fastest of `rounds`, measured alternately."""
    times = [float("inf"), float("inf")]
    for _ in range(rounds):
        times[0] = min(times[0], fastest(lambda: reader(body), repeats=1))
        times[1] = min(times[1], fastest(yardstick, repeats=1))
    return times[0] / times[1]


def test_the_verdicts_of_the_corpus_at_1_mb():
    """Refused with the rule it broke, or read: the corpus exercises each check, not only the clock."""
    verdicts = {}
    for name, shape in SHAPES.items():
        try:
            strict_json.loads(shape(MB).encode())
            verdicts[name] = "read"
        except JsonRefused as err:
            verdicts[name] = str(err)
    assert verdicts["escaped quotes inside a string"] == "read"
    assert verdicts["brackets inside a string"] == "read"
    assert verdicts["nesting just under the limit"] == "read"
    assert "nested 17 deep" in verdicts["nesting just over the limit"]
    assert "Unterminated string" in verdicts["unterminated string of escaped quotes"]
    assert "Unterminated string" in verdicts["unterminated run of backslashes"]
    for name in ("quotes alone", "quotes and spaces", "many short keys", "opening brackets"):
        assert "values" in verdicts[name], name
    assert "closing brackets" in verdicts["closing brackets"]
    assert "number is longer" in verdicts["one long number"]
    assert "delimiter" in verdicts["numbers at the digit limit"]


def test_strings_are_emptied_up_to_the_most_a_valid_document_can_hold():
    """A document within the limits has at most 2 * max_values + 1 strings; one more refuses the body."""
    limits = strict_json.JsonLimits(max_values=10)
    most = [f"k{i}" for i in range(5)]  # 5 keys and 5 values: 10 values and 10 keys, 20 strings
    document = {key: key for key in most}
    assert strict_json.loads(json.dumps(document), limits) == document
    with pytest.raises(JsonRefused, match="more than 10 values"):
        strict_json.loads('"' * (2 * 2 * limits.max_values + 4), limits)


def test_one_file_serves_the_serving_image_and_the_lambda():
    from kennel_serve import codecs
    from sagemaker_inference import decoder

    from deploy import function
    from kennel_proxy import validation

    assert codecs.strict_json is decoder.strict_json is strict_json
    assert validation.strict_json_loads is strict_json.loads
    with zipfile.ZipFile(io.BytesIO(function.package(ROOT / "kennel_proxy"))) as zf:
        assert (
            zf.read("kennel_common/strict_json.py")
            == (ROOT / "kennel_common" / "strict_json.py").read_bytes()
        )
    # No second strict reader (duplicate-key hook, string-emptying pattern) in serving or the Lambda.
    for folder in (ROOT / "containers" / "serve", ROOT / "kennel_proxy"):
        for path in folder.rglob("*.py"):
            text = path.read_text()
            assert "object_pairs_hook" not in text and '[^"\\\\]' not in text, path
