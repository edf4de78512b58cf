"""What a request is told when it fails: OpenAI's error body, and the RequestError that
carries it with its HTTP status. Raised by the HTTP layer (mlx_service/http/validation.py) and by
the inference façade beneath it (mlx_service/engine/inference.py, scoring.py) alike, so it lives
below both.
"""
from __future__ import annotations


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error shape: the one body every error answer of the service carries, whether
    the app (a RequestError, a bug) or waitress (a body over the limit, a bad request line)
    found the error."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class RequestError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, retry_after: int = 1):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after = retry_after  # seconds, said on 429 and 503

    @property
    def type(self) -> str:
        return "invalid_request_error"

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)
