"""CORS headers for the origins in KENNEL_CORS_ALLOW_ORIGINS: on every answer, and on a preflight's."""

from collections.abc import Mapping

# What a page on an allowed origin may read of an answer (proxy.py sets the last two).
EXPOSED = "Retry-After, X-Kennel-Precision, X-Request-Id"


def cors_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    """The headers for a request from `origin`; none when the origin is not allowed."""
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": EXPOSED}
    if origin and origin.lower() in allowed:
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": EXPOSED,
            "Vary": "Origin",
        }
    return {}


def preflight_headers(cors: Mapping[str, str]) -> dict[str, str]:
    """What an OPTIONS preflight adds to `cors`, the request's own CORS headers."""
    if not cors:
        return {}
    return {
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
    }
