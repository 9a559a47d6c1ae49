"""The toolkit's error types. Kennel answers a BaseInferenceToolkitError raised by a handler with its
`status_code` and `message`, and UnsupportedFormatError with 415."""


class UnsupportedFormatError(Exception):
    """An unsupported content type was provided."""

    def __init__(self, content_type: str, **kwargs: object) -> None:
        self._message = (
            f"Content type {content_type} is not supported by this framework. Please implement input_fn to "
            "deserialize the request data or an output_fn to serialize the response."
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
