"""Structured JSON log lines for Cloud Logging: one line per decision worth seeing.

Cloud Run and Cloud Functions read a JSON line on stdout as a structured entry with its
``severity`` and ``message``. Only bounded excerpts of message bodies are ever logged, and
never a token or key.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Final, TextIO

_LOCK: Final = threading.Lock()
_MAX_FIELD: Final = 500


class Log:
    """Writes one JSON object per line to a stream (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, severity: str, message: str, **fields: Any) -> None:
        """Log one entry; ``fields`` become top-level JSON fields (``jsonPayload.*``)."""
        entry: dict[str, Any] = {"severity": severity, "message": message}
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, str) and len(value) > _MAX_FIELD:
                value = value[:_MAX_FIELD] + "..."
            entry[key] = value
        line = json.dumps(entry, default=str, ensure_ascii=False)
        stream = self._stream or sys.stdout
        with _LOCK:
            stream.write(line + "\n")
            stream.flush()


log = Log()
