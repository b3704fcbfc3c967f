"""The invocation context the supervisor passes in; the child turns it into Lambda's `context` object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class InvocationContext:
    """What becomes the Lambda-style `context` object in the child."""

    function_name: str
    function_version: str
    aws_request_id: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    log_group_name: str
    log_stream_name: str
    deadline_epoch: float

    def to_wire(self) -> dict[str, Any]:
        """Plain dict for the child protocol."""
        return self.__dict__.copy()
