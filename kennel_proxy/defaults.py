"""The Lambda proxy's settings: every environment variable it reads, with its default and what it means.

The one table of them: settings.py reads its defaults here, and deploy/function.py imports it to size the
function's timeouts around them. Defaults are written as the variable's text, and parsed as a value set in
the environment is.
"""

# name: (default, meaning); an empty default means unset.
VARIABLES: dict[str, tuple[str, str]] = {
    "SAGEMAKER_ENDPOINT_NAME": ("", "required: the SageMaker endpoint to invoke"),
    "KENNEL_ALLOWED_URL_HOSTS": ("", "comma-separated `host` or `host:port`; empty: URL bodies refused"),
    "KENNEL_MAX_IMAGE_BYTES": ("6291456", "largest image, sent or fetched (6 MiB, SageMaker's own cap)"),
    "KENNEL_URL_CONNECT_TIMEOUT_S": ("2", "seconds to connect to a URL body's host, each hop"),
    "KENNEL_URL_READ_TIMEOUT_S": ("5", "seconds for the whole fetch of a URL body, redirects included"),
    "KENNEL_INVOKE_CONNECT_TIMEOUT_S": ("2", "seconds to connect to the endpoint, each attempt"),
    "KENNEL_INVOKE_READ_TIMEOUT_S": ("20", "seconds for the endpoint's answer, each attempt"),
    "KENNEL_RETRY_MODE": ("standard", "botocore's retry mode: standard or adaptive"),
    "KENNEL_MAX_ATTEMPTS": ("3", "InvokeEndpoint attempts, the first included (botocore's count)"),
    "KENNEL_CORS_ALLOW_ORIGINS": ("", "comma-separated origins or `*`; empty: no CORS headers"),
    "KENNEL_LOCAL_ENDPOINT_URL": ("", "a serving container, e.g. http://serve:8080, to use instead of AWS"),
}
