"""The checks every section of the stack file shares. A `Table` is one TOML table: each accessor checks
one key, raises a `StackError` that starts with the key's dotted name, and remembers the key, so that
`reject_unknown` can name the one nobody read (a misspelling, most often)."""

import re
from typing import Any

# Shapes that several sections check.
PREFIX = re.compile(r"^[a-z0-9][a-z0-9/_-]*[a-z0-9]$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


class StackError(ValueError):
    """A stack file that cannot be deployed; the message starts with the offending key."""


class Table:
    """One TOML table; each accessor records the key it read so unknown keys can be reported."""

    def __init__(self, data: Any, dotted: str) -> None:
        self.dotted = dotted
        self.present = data is not None
        self.data = data if isinstance(data, dict) else {}
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.dotted}.{name}" if self.dotted else name

    def _get(self, name: str, required: bool) -> Any:
        self.read.add(name)
        if name not in self.data:
            if required:
                raise StackError(f"{self.key(name)}: missing")
            return None
        return self.data[name]

    def table(self, name: str, required: bool = True) -> "Table":
        value = self._get(name, required)
        if value is not None and not isinstance(value, dict):
            raise StackError(f"{self.key(name)}: must be a table")
        return Table(value, self.key(name))

    def string(self, name: str, required: bool = True, pattern: re.Pattern | None = None) -> Any:
        value = self._get(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise StackError(f"{self.key(name)}: must be a non-empty string")
        if pattern and not pattern.match(value):
            raise StackError(f"{self.key(name)}: {value!r} does not match {pattern.pattern}")
        return value

    def integer(self, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int):
            raise StackError(f"{self.key(name)}: must be an integer")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise StackError(f"{self.key(name)}: {value} is outside [{minimum}, {maximum}]")
        return value

    def number(self, name: str) -> float:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise StackError(f"{self.key(name)}: must be a positive number")
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self._get(name, True)
        if not isinstance(value, bool):
            raise StackError(f"{self.key(name)}: must be true or false")
        return value

    def strings(self, name: str, pattern: re.Pattern) -> list[str]:
        value = self._get(name, True)
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and pattern.match(v) for v in value)
        ):
            raise StackError(
                f"{self.key(name)}: must be a non-empty list of names matching {pattern.pattern}"
            )
        return value

    def numbers(self, name: str, kind: type, length: int | None = None) -> list:
        value = self._get(name, True)
        ok = (
            isinstance(value, list)
            and value
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        )
        if ok and kind is int:
            ok = all(isinstance(v, int) and v > 0 for v in value)
        if not ok or (length is not None and len(value) != length):
            size = f" of {length}" if length else ""
            raise StackError(f"{self.key(name)}: must be a list{size} of {kind.__name__}s")
        return [kind(v) for v in value]

    def string_map(self) -> dict[str, str]:
        for k, v in self.data.items():
            if not isinstance(v, str):
                raise StackError(f"{self.key(k)}: must be a string")
        return dict(self.data)

    def scalar_map(self) -> dict[str, str]:
        """SageMaker hyperparameters are strings; TOML numbers and booleans are converted."""
        out = {}
        for k, v in self.data.items():
            if isinstance(v, dict | list):
                raise StackError(f"{self.key(k)}: must be a string, number or boolean")
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            raise StackError(f"{self.key(unknown[0])}: unknown key")

    # Optional keys: None when left out.
    def optional_integer(self, name: str, minimum: int, maximum: int | None = None) -> int | None:
        return self.integer(name, minimum, maximum) if name in self.data else self._get(name, False)

    def optional_number(self, name: str) -> float | None:
        return self.number(name) if name in self.data else self._get(name, False)

    def optional_percent(self, name: str) -> float | None:
        value = self.optional_number(name)
        if value is not None and value > 100:
            raise StackError(f"{self.key(name)}: {value:g} is a percentage, at most 100")
        return value

    def optional_string(self, name: str, default: str | None, pattern: re.Pattern) -> str | None:
        value = self.string(name, required=False, pattern=pattern)
        return default if value is None else value

    def optional_list(self, name: str, of: str) -> list:
        """The list at `name`, empty when left out; `of` says what its entries are, for the error."""
        value = self._get(name, False)
        if value is None:
            return []
        if not isinstance(value, list):
            raise StackError(f"{self.key(name)}: must be a list of {of}")
        return value
