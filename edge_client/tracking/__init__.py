"""Multi-object tracking for the edge client: a small ByteTrack (Zhang et al. 2022).

Our own because the maintained implementations don't fit the single environment: roboflow
``trackers`` needs numpy>=2 and opencv-python, supervision dropped ByteTrack after 0.26 and
0.26 pulls opencv-python (we need numpy<2 and opencv-contrib-python-headless).

Layout: ``kalman`` (batched constant-velocity filter), ``matching`` (IoU + Hungarian),
``track`` (one track's lifecycle), ``byte_tracker`` (the two-stage association).

Deliberate differences from the reference implementation (ifzhang/ByteTrack):
- public ids only on confirmation (``min_hits`` consecutive hits, first frame included,
  also on the stream's first frame) from an injectable counter, so ids are dense;
- ``update`` reports the detected box, not the Kalman estimate;
- one IoU threshold (``match_iou``) for all three stages (the reference uses 0.2 / 0.5 /
  0.3 IoU), no score fusion into the IoU, no separate new-track score threshold, and no
  pruning of duplicate tracked/lost pairs;
- every track, tentative ones included, is Kalman-predicted before matching.
"""

from .byte_tracker import ByteTracker
from .track import Track, TrackState

__all__ = ["ByteTracker", "Track", "TrackState"]
