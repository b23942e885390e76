"""One camera's pipeline, as a thin loop over injected stages.

- ``loop``: ``CameraPipeline``, the frame loop (source -> zone filter -> detect -> track
  -> read -> vote -> report) and the per-track decisions;
- ``stages``: ``Stages``, the collaborators it is given (protocols; fakes in tests);
- ``modes``: ``CameraMode`` strategies chosen by the camera's ``mode:`` (``MODES``);
- ``events``: the one event factory (``track_event``) over ``edge_client.events``;
- ``cache``: ``LoopCache``, the typed track-cache facade that never raises;
- ``stats``: ``PipelineStats``, the counters of a run.
"""

from edge_client.contracts import Read

from .cache import LoopCache, TrackStore
from .loop import CameraPipeline, fit_long_side
from .modes import MODES, CameraMode, PlateMode, VehicleMode, mode_for
from .stages import EventSink, ReadQueue, ResumeStore, Stages
from .stats import PipelineStats

__all__ = [
    "MODES",
    "CameraMode",
    "CameraPipeline",
    "EventSink",
    "LoopCache",
    "PipelineStats",
    "PlateMode",
    "Read",
    "ReadQueue",
    "ResumeStore",
    "Stages",
    "TrackStore",
    "VehicleMode",
    "fit_long_side",
    "mode_for",
]
