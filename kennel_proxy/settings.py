"""The proxy's settings, read once per cold start from the environment; defaults.py lists every variable
with its default. A missing or malformed value fails the cold start, naming the variable."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .defaults import VARIABLES
from .safe_fetch import FetchPolicy


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    allowed_url_hosts: frozenset[str]
    max_image_bytes: int
    url_connect_timeout_s: float
    url_read_timeout_s: float
    invoke_connect_timeout_s: float
    invoke_read_timeout_s: float
    retry_mode: str
    max_attempts: int
    cors_allow_origins: frozenset[str]
    local_endpoint_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> "Settings":
        """The settings in `env`, defaults for the rest; `overrides` replace fields (tests use them)."""
        endpoint = env.get("SAGEMAKER_ENDPOINT_NAME", "").strip()
        if not endpoint:
            raise ValueError("SAGEMAKER_ENDPOINT_NAME must name the SageMaker endpoint")
        retry_mode = env.get("KENNEL_RETRY_MODE", VARIABLES["KENNEL_RETRY_MODE"][0])
        if retry_mode not in {"standard", "adaptive"}:
            raise ValueError(f"KENNEL_RETRY_MODE must be standard or adaptive, not {retry_mode!r}")
        values = {
            "endpoint_name": endpoint,
            "allowed_url_hosts": _names(_text(env, "KENNEL_ALLOWED_URL_HOSTS")),
            "max_image_bytes": _positive(env, "KENNEL_MAX_IMAGE_BYTES", int),
            "url_connect_timeout_s": _positive(env, "KENNEL_URL_CONNECT_TIMEOUT_S", float),
            "url_read_timeout_s": _positive(env, "KENNEL_URL_READ_TIMEOUT_S", float),
            "invoke_connect_timeout_s": _positive(env, "KENNEL_INVOKE_CONNECT_TIMEOUT_S", float),
            "invoke_read_timeout_s": _positive(env, "KENNEL_INVOKE_READ_TIMEOUT_S", float),
            "retry_mode": retry_mode,
            "max_attempts": _positive(env, "KENNEL_MAX_ATTEMPTS", int),
            "cors_allow_origins": _names(_text(env, "KENNEL_CORS_ALLOW_ORIGINS")),
            "local_endpoint_url": _text(env, "KENNEL_LOCAL_ENDPOINT_URL") or None,
        }
        return cls(**{**values, **overrides})

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(
            allowed_hosts=self.allowed_url_hosts,
            max_bytes=self.max_image_bytes,
            connect_timeout_s=self.url_connect_timeout_s,
            read_timeout_s=self.url_read_timeout_s,
        )


def _text(env: Mapping[str, str], name: str) -> str:
    return env.get(name) or VARIABLES[name][0]


def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip().lower() for name in value.split(",") if name.strip())


def _positive(env: Mapping[str, str], name: str, kind: type) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        raw = VARIABLES[name][0]
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value <= 0:
        raise ValueError(f"{name} must be a positive {kind.__name__}, not {raw!r}")
    return value
