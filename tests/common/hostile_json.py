"""Hostile JSON shapes of any size: the corpus that the strict-JSON reader's cost is tested on, and that
`make soak` (bench/soak.py) sends at 1 MB among its requests. None of them is a valid request."""

from collections.abc import Callable

from kennel_common.strict_json import LIMITS

# Each shape, stretched to about n bytes.
SHAPES: dict[str, Callable[[int], str]] = {
    "unterminated string of escaped quotes": lambda n: '{"instances": "' + '\\"' * (n // 2),
    "unterminated run of backslashes": lambda n: '{"instances": "' + "\\" * n,
    "quotes alone": lambda n: '"' * n,
    "quotes and spaces": lambda n: '" ' * (n // 2),
    "escaped quotes inside a string": lambda n: '["' + 'a\\"' * (n // 3) + '"]',
    "brackets inside a string": lambda n: '["' + "[{" * (n // 2) + '"]',
    "many short keys": lambda n: "{" + ",".join(f'"k{i}":0' for i in range(n // 8)) + "}",
    "nesting just under the limit": lambda n: (
        "[" * (LIMITS.max_depth - 1) + '"' + "x" * n + '"' + "]" * (LIMITS.max_depth - 1)
    ),
    "nesting just over the limit": lambda n: (
        "[" * (LIMITS.max_depth + 1) + '"' + "x" * n + '"' + "]" * (LIMITS.max_depth + 1)
    ),
    "numbers at the digit limit": lambda n: "[" + ("9" * LIMITS.max_number_chars + " ") * (n // 41) + "]",
    "opening brackets": lambda n: "[" * n,
    "closing brackets": lambda n: "]" * n,
    "one long number": lambda n: "1" * n,
}
