"""What a sink accepts and what it is: the two protocols every sink and every event honour.

Camera events (``edge_client.events``) and gate decisions (``gate.contracts.DecisionEvent``)
both satisfy ``SinkEvent``, so the same sinks carry both with no casts.
"""

from __future__ import annotations

from typing import Any, Protocol


class SinkEvent(Protocol):
    """An event a sink can deliver: an id (for de-duplication downstream), the camera it
    concerns (topic / stream routing), its plate text, and its JSON body."""

    @property
    def event_id(self) -> str: ...

    @property
    def camera(self) -> str: ...

    @property
    def plate(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


class Sink(Protocol):
    """An event destination. ``emit`` must not block the pipeline for long; ``close``
    flushes what is buffered."""

    def emit(self, event: SinkEvent) -> None: ...

    def close(self) -> None: ...
