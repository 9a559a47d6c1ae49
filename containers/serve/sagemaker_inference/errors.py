"""The toolkit's error types. Kennel answers a BaseInferenceToolkitError raised by a handler with its
`status_code` and `message`, and UnsupportedFormatError with 415."""

import textwrap


class UnsupportedFormatError(Exception):
    """An unsupported content type was provided."""

    def __init__(self, content_type: str, **kwargs: object) -> None:
        # The toolkit's text to the character ("to to" included): a script that logs or compares it, and the
        # first line that Kennel sends to the client, read the same in both builds.
        self._message = textwrap.dedent(
            f"""Content type {content_type} is not supported by this framework.

            Please implement input_fn to to deserialize the request data or an output_fn to
            serialize the response. For more information, see the SageMaker Python SDK README."""
        )
        super().__init__(self._message, **kwargs)


class BaseInferenceToolkitError(Exception):
    """A problem during inference, with the HTTP status to send to the client."""

    def __init__(self, status_code: int, message: str, phrase: str) -> None:
        self.status_code = status_code
        self.message = message
        self.phrase = phrase
        super().__init__(status_code, message, phrase)


class GenericInferenceToolkitError(BaseInferenceToolkitError):
    def __init__(self, status_code: int, message: str | None = None, phrase: str | None = None) -> None:
        message = message or "Invalid Request"
        super().__init__(status_code, message, phrase or message)
