"""Replaces a model response that leaks a secret (``after_model`` returning a new one).

A response whose text contains ``api_key=...`` is replaced by the same text with the
key redacted; the AGENT set's ``after_model`` is ``first_result``, so the replacement
is the response the agent goes on with.
"""

from __future__ import annotations

import re
from typing import Any

SECRET = re.compile(r"(api_key=)[\w-]+")


class RedactPlugin:
    name = "redact"
    version = "1.0.0"

    def after_model(self, response: dict[str, Any]) -> dict[str, Any] | None:
        content = response.get("content")
        if isinstance(content, str) and SECRET.search(content):
            return {**response, "content": SECRET.sub(r"\1[redacted]", content)}
        return None
