"""JSON Lines sink: one ``event.to_json()`` object per line, flushed per event."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from typing import IO, Any

from alpr_common.config import JsonlSink
from alpr_common.files import safe_name

from .base import SinkEvent


def resolve_path(template: Path | str, camera: str, output_dir: Path | None = None) -> Path:
    """``template`` with ``{camera}`` replaced by the sanitised camera id; a relative result
    is taken relative to ``output_dir`` (when given)."""
    path = Path(str(template).replace("{camera}", safe_name(camera)))
    if output_dir is not None and not path.is_absolute():
        path = Path(output_dir) / path
    return path


class JsonlWriter:
    """Appends events to a JSON Lines file (parent folders created on first write).

    Lines are written with one ``write`` call and flushed, so a crash loses at most the
    event being written and concurrent readers (``tail -f``) see whole lines. Write errors
    raise ``OSError`` (``SinkSet`` counts them as failures) and the next event reopens the
    file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._written = 0

    @classmethod
    def from_config(
        cls, cfg: JsonlSink, *, camera: str, redis_client: Any = None, output_dir: Path
    ) -> JsonlWriter:
        return cls(resolve_path(cfg.path, camera, output_dir))

    def emit(self, event: SinkEvent) -> None:
        line = json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
            except OSError:
                self._close_file()
                raise
            self._written += 1

    def stats(self) -> dict[str, int]:
        return {"delivered": self._written, "failed": 0, "dropped": 0}

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()

    def close(self) -> None:
        with self._lock:
            self._close_file()

    def __repr__(self) -> str:
        return f"JsonlWriter({str(self.path)!r})"
