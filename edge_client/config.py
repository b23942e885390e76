"""One configuration tree for the edge client, loaded from YAML and validated by pydantic.

Every section rejects unknown keys (a typo fails loudly), every field is described and
bounded, secrets come from the environment. ``load_config`` turns validation errors into
one readable message naming each bad key and value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from alpr_common.backoff import Backoff, Retry
from alpr_common.config import (  # noqa: F401  (ConfigError, sinks: part of this tree's API)
    CAMERA_ID,
    ConfigError,
    JsonlSink,
    MqttSink,
    Redis,
    RedisStreamSink,
    Sink,
    Strict,
    WebhookSink,
    load_model,
    parse_model,
)
from edge_client.balancer import BalanceSettings, Policy, Target
from edge_client.enhance import Enhancement
from edge_client.unread import UnreadCrops


# --- per camera -----------------------------------------------------------------------
class Roi(Strict):
    """Region of interest as fractions of the frame (0..1)."""

    x1: float = Field(0.0, ge=0, le=1)
    y1: float = Field(0.0, ge=0, le=1)
    x2: float = Field(1.0, ge=0, le=1)
    y2: float = Field(1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Roi:
        if self.x2 <= self.x1 or self.y2 <= self.y1:
            raise ValueError(f"roi must have x1 < x2 and y1 < y2, got {self.model_dump()}")
        return self


Point = tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]]


class Zone(Strict):
    """A camera's gate zone, in fractions of the frame: where vehicles are tracked and
    read, a counting line that tells entries from exits, and how cheap empty frames are."""

    polygon: list[Point] = Field(
        min_length=3, description="zone outline [[x, y], ...]; a vehicle is in it by box centre"
    )
    line: tuple[Point, Point] | None = Field(
        None, description="counting line [[x1, y1], [x2, y2]]; crossing it sets the direction"
    )
    entry: Literal["down", "up", "left", "right"] = Field(
        "down", description="image direction of motion across the line that counts as entry"
    )
    idle_every: int = Field(
        3, ge=1, le=100,
        description="with no vehicle in the zone, run the detector on one frame in N",
    )  # fmt: skip
    crop_detection: bool = Field(
        True, description="send only the zone's bounding box to the detector"
    )
    vehicle_events: bool = Field(
        True, description="emit a `vehicle` event (direction, dwell) when a zone track ends"
    )

    @model_validator(mode="after")
    def _not_degenerate(self) -> Zone:
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
            raise ValueError("zone polygon has no area")
        if self.line is not None and self.line[0] == self.line[1]:
            raise ValueError("zone line needs two distinct points")
        return self


class Thresholds(Strict):
    detection: float = Field(0.35, gt=0, le=1, description="minimum detector score to track")
    min_box_px: int = Field(48, ge=4, le=4096, description="minimum box height in px to read")
    stable_frames: int = Field(
        3, ge=1, le=300, description="frames a track must last before reading"
    )
    read_confidence: float = Field(0.85, gt=0, le=1, description="below this a read may be retried")
    max_retries: int = Field(2, ge=0, le=20, description="extra reads of a track on better frames")
    min_plate_len: int = Field(4, ge=1, le=12, description="shorter reads are ignored")
    retry_quality_gain: float = Field(
        1.15, ge=1.0, le=10.0,
        description=(
            "a retry needs a crop this much better than the last one read; raising it saves "
            "OCR calls but keeps a poor first read, lowering it re-reads near-identical crops"
        ),
    )  # fmt: skip


class Tracking(Strict):
    """ByteTrack knobs (raising ``lost_frames`` keeps ids through occlusions but may merge
    vehicles; raising ``match_iou`` makes association stricter)."""

    high_score: float = Field(0.5, gt=0, le=1, description="detections above start/continue tracks")
    low_score: float = Field(0.1, gt=0, le=1, description="second-stage association floor")
    match_iou: float = Field(0.2, gt=0, le=1, description="minimum IoU to associate")
    lost_frames: int = Field(30, ge=1, le=3000, description="frames a lost track is kept")


class RetryPolicy(Strict):
    """A capped exponential backoff: first wait, doubled after each consecutive failure up
    to the cap, back to the first wait after a success."""

    first_s: float = Field(
        description=(
            "wait after the first failure; raising it spares a struggling server, lowering "
            "it recovers sooner from a blip"
        ),
        gt=0, le=600,
    )  # fmt: skip
    cap_s: float = Field(
        description=(
            "longest wait; raising it sends fewer requests to a server that stays down, "
            "lowering it notices its return sooner"
        ),
        gt=0, le=3600,
    )  # fmt: skip

    @model_validator(mode="after")
    def _ordered(self) -> RetryPolicy:
        if self.cap_s < self.first_s:
            raise ValueError(f"cap_s must be >= first_s, got {self.model_dump()}")
        return self

    def retry(self) -> Retry:
        """A fresh ``alpr_common.backoff.Retry``: ``fail()`` gives the next wait, ``reset()``
        after a success."""
        return Backoff(self.first_s, self.cap_s).retry()


class Crops(Strict):
    """How a track's best crop is cut and sent to the reader."""

    vehicle_margin: float = Field(
        0.04, ge=0, le=1,
        description=(
            "vehicles mode: crop grown by this fraction of the vehicle box; raising it keeps "
            "a plate at the box edge, lowering it sends fewer background pixels to the reader"
        ),
    )  # fmt: skip
    plate_margin: float = Field(
        0.12, ge=0, le=1,
        description=(
            "plates mode: crop grown by this fraction of the plate box; raising it forgives "
            "a loose detector box, lowering it gives the recogniser more pixels per character"
        ),
    )  # fmt: skip
    edge_px: int = Field(
        2, ge=0, le=100,
        description=(
            "a box this close to the frame border is cut by it; raising it rejects more "
            "partial plates, lowering it reads boxes that touch the border"
        ),
    )  # fmt: skip
    cut_weight: float = Field(
        0.3, ge=0, le=1,
        description=(
            "vehicles mode: quality weight of a crop cut by the border (plates mode never "
            "reads one); raising it lets partial views win, lowering it waits for a whole one"
        ),
    )  # fmt: skip
    read_long_side: int = Field(
        640, ge=32, le=4096,
        description=(
            "crops are downscaled to this long side before reading; raising it keeps detail "
            "for small plates, lowering it makes requests smaller and faster"
        ),
    )  # fmt: skip
    jpeg_quality: int = Field(
        85, ge=10, le=100,
        description=(
            "JPEG quality of a crop sent for reading; raising it keeps character edges, "
            "lowering it makes requests smaller"
        ),
    )  # fmt: skip
    enhance: Enhancement = Field(
        default_factory=Enhancement,
        description="contrast (CLAHE) and denoising of a crop before it is read (night, IR)",
    )
    save_frame: bool = Field(
        False,
        description=(
            "keep the whole frame of each track's best crop and save it with the event "
            "(`images.frame`, for sinks with `image: frame`); costs one frame copy per track"
        ),
    )  # fmt: skip


class StreamMatch(Strict):
    """How detect-stream frames are paired with read-stream frames (``read_source``)."""

    max_drift_s: float = Field(
        0.1, ge=0, le=5,
        description=(
            "a read frame further than this in time from the detect frame is not used (the "
            "crop comes from the sub-stream, counted as unmatched); raising it pairs more "
            "frames across a laggy main stream, lowering it keeps the crop on the same instant"
        ),
    )  # fmt: skip
    buffer: int = Field(
        8,
        ge=1,
        le=240,
        description="read-stream frames held for matching (memory: this many main-stream frames)",
    )


class Runtime(Strict):
    """The camera loop's queues and periods."""

    frame_queue: int = Field(
        8, ge=1, le=10_000,
        description=(
            "decoded frames waiting for the loop; raising it absorbs longer detector stalls "
            "(more memory, older frames), lowering it drops live frames sooner"
        ),
    )  # fmt: skip
    detect_ahead: int = Field(
        4, ge=1, le=16,
        description=(
            "frames whose detection requests are in flight at once, so the server works on "
            "the next frame while the loop tracks this one (tracking stays in frame order); "
            "1 sends one frame at a time; raising it hides more network latency and keeps "
            "every server instance busy (plate_locator runs 2), at the cost of frames "
            "tracked that much later (4 frames: ~60 ms on 2 cores)"
        ),
    )  # fmt: skip
    poll_s: float = Field(
        0.05, gt=0, le=5,
        description=(
            "longest wait for a frame or a held frame's retry; raising it saves idle CPU, "
            "lowering it applies read results sooner when frames are scarce"
        ),
    )  # fmt: skip
    flush_timeout_s: float = Field(
        30.0, ge=0, le=3600,
        description=(
            "at the end of a file, how long to wait for the last reads; raising it loses "
            "fewer plates to a slow server, lowering it ends a stuck run sooner"
        ),
    )  # fmt: skip
    flush_poll_s: float = Field(
        0.02, gt=0, le=5, description="pause between checks while flushing the last reads"
    )
    cursor_every_s: float = Field(
        1.0, gt=0, le=3600,
        description=(
            "period of the resume cursor write; raising it writes Redis less often, "
            "lowering it re-processes fewer frames after a crash"
        ),
    )  # fmt: skip
    heartbeat_every_s: float = Field(
        2.0, gt=0, le=3600,
        description=(
            "period of the camera status hash for the gate dashboard; raising it writes "
            "Redis less often, lowering it makes the dashboard's fps more current"
        ),
    )  # fmt: skip
    heartbeat_ttl_s: int = Field(
        15, ge=1, le=86_400,
        description=(
            "the status hash expires this long after the last heartbeat; raising it "
            "survives longer stalls, lowering it shows a dead client as gone sooner"
        ),
    )  # fmt: skip
    detect_backoff: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(first_s=0.5, cap_s=5.0),
        description="pause before detecting again after the detector failed",
    )
    read_backoff: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(first_s=1.0, cap_s=10.0),
        description="pause before re-reading a track after its read request failed",
    )


class Camera(Strict):
    source: str = Field(
        validation_alias=AliasChoices("source", "detect_source"),
        description="video file, rtsp:// URL, or V4L2 device (/dev/video0 or 0); with "
        "`read_source`, the low-resolution sub-stream detection runs on (alias `detect_source`)",
    )
    read_source: str | None = Field(
        None,
        description="the camera's full-resolution main stream: detection and tracking stay "
        "on `source`, each track's read crop is cut from the matching main-stream frame",
    )
    stream_match: StreamMatch = Field(
        default_factory=StreamMatch, description="pairing of `source` and `read_source` frames"
    )
    mode: Literal["vehicles", "plates"] = Field("vehicles", description="what the detector finds")
    plate_finder: Literal["locator", "detector"] = Field(
        "locator",
        description="plates mode, per frame: `locator` runs only plate_locator (the YOLO plate "
        "model; the track's best crop is refined and read once, through alpr); `detector` "
        "runs the heavy plate_detector (YOLO + text-line refinement + crops) on every frame "
        "and reads crops with plate_ocr: several times the per-frame cost, for servers "
        "without plate_locator",
    )
    process_every: int = Field(1, ge=1, le=100, description="process one frame in N (frame skip)")
    max_fps: float | None = Field(
        None, gt=0, le=240, description="cap on processed frames per second"
    )
    inference_size: Literal[640] = Field(
        640,
        description="unused, kept so older configs load: the detector's input side is the "
        "model's (`dims` in its config.pbtxt), which the client reads from the server",
    )
    roi: Roi = Field(default_factory=Roi)
    zone: Zone | None = Field(None, description="gate zone: polygon, counting line, idle rate")
    read_plates: bool = Field(
        True, description="false for an overview camera: track and describe vehicles, no OCR"
    )
    vehicle_colour: bool = Field(
        True, description="name each vehicle's dominant colour (vehicles mode, best frame)"
    )
    thresholds: Thresholds = Field(default_factory=Thresholds)
    tracking: Tracking = Field(default_factory=Tracking)
    regions: list[str] = Field(
        default_factory=lambda: ["eu"], min_length=1, description="plate formats"
    )
    dedup_window_s: float = Field(
        60.0, ge=0, le=86_400, description="same plate within this = duplicate"
    )
    sinks: list[Sink] = Field(default_factory=list, description="where events go (besides the log)")
    decoder: Literal["auto", "cpu", "pyav", "opencv", "nvdec"] = Field(
        "auto",
        description="video decoder: `pyav` (FFmpeg packet by packet: corrupt packets and frames "
        "counted and skipped, presentation times), `opencv` (cv2.VideoCapture); `cpu` and "
        "`auto` pick PyAV when installed; `nvdec` is not implemented (decodes on the CPU)",
    )
    loop: bool = Field(False, description="restart a file source at its end (soak tests)")
    realtime: bool = Field(
        False,
        description="play a file source at its frame rate like a live camera (frames are "
        "dropped, not waited for, when the loop is behind): load and chaos tests",
    )
    playback_speed: float = Field(
        1.0, gt=0, le=100, description="with `realtime`: media seconds played per wall second"
    )
    rtsp_open_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="an RTSP camera that has not delivered a stream within this many seconds "
        "of connecting is given up and retried with backoff (a stalled camera that accepts "
        "the connection and sends nothing included)",
    )
    rtsp_read_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="an RTSP stream that delivers no packet for this many seconds is dropped "
        "and reopened (a stall in the middle of a stream); too low and a slow link drops",
    )
    crops: Crops = Field(default_factory=Crops, description="crop margins and read encoding")

    @model_validator(mode="after")
    def _two_different_streams(self) -> Camera:
        if self.read_source is not None and self.read_source == self.source:
            raise ValueError("read_source is the same stream as source: leave it out")
        return self

    runtime: Runtime = Field(default_factory=Runtime, description="loop queues and periods")
    unread_crops: UnreadCrops = Field(
        default_factory=UnreadCrops,
        description="save the best crop of each track that ends without a read (tuning aid)",
    )


class Triton(Strict):
    """The inference servers and how requests are spread over them (``edge_client.balancer``)."""

    urls: list[str] = Field(
        default_factory=lambda: ["localhost:8001"],
        min_length=1,
        description="gRPC host:port, or dns+host:port for every address the name resolves to "
        "(in Kubernetes a headless Service: one per ready pod); `failover` tries them in order",
    )
    balance: Policy = Field(
        "least_outstanding",
        description="least_outstanding: the replica with the fewest requests in flight; "
        "round_robin: each in turn; failover: the first healthy one in `urls` order, kept "
        "until it fails (no spreading)",
    )
    dns_refresh_s: float = Field(
        30.0, gt=0, le=3600,
        description=(
            "dns+ names are resolved again this often; lowering it finds new pods sooner, "
            "raising it makes fewer DNS queries"
        ),
    )  # fmt: skip
    eject_after: int = Field(
        3, ge=1, le=100,
        description=(
            "consecutive failures (requests or health probes) that take a replica out; "
            "lowering it reacts faster to a dead pod, raising it forgives blips"
        ),
    )  # fmt: skip
    eject_backoff: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(first_s=1.0, cap_s=30.0),
        description="wait before an ejected replica is probed again (doubling while it fails)",
    )
    health_interval_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="period of the health probes (server and used models ready) per replica",
    )
    timeout_s: float = Field(10.0, gt=0, le=300)
    max_batch: int = Field(8, ge=1, le=16, description="tracks read in one request")
    read_queue: int = Field(64, ge=1, le=10_000, description="bounded queue of pending reads")
    shared_memory: bool = Field(
        False,
        description="send frames to the detector / plate locator through a system "
        "shared-memory region (the server must run on this host): no frame bytes over gRPC",
    )

    @field_validator("urls")
    @classmethod
    def _targets(cls, urls: list[str]) -> list[str]:
        for url in urls:
            Target.parse(url)  # host:port or dns+host:port, else a clear error
        return urls

    def balance_settings(self) -> BalanceSettings:
        """These settings for ``edge_client.balancer`` (``TritonEndpoint.balance``)."""
        policy = self.eject_backoff
        return BalanceSettings(
            self.balance, self.eject_after, Backoff(policy.first_s, policy.cap_s),
            self.health_interval_s, self.dns_refresh_s,
        )  # fmt: skip


class CropServer(Strict):
    """The edge's crop server: sinks with ``image_encoding: url`` link to it."""

    host: str = Field("0.0.0.0", description="listen address")
    port: int = Field(8765, ge=0, le=65535, description="listen port (0: a free one)")
    secret_env: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="environment variable with the link-signing secret (the same variable "
        "as the sinks' `image_url_secret_env`)",
    )


class EdgeConfig(Strict):
    triton: Triton = Field(default_factory=Triton)
    redis: Redis = Field(default_factory=Redis)
    output_dir: Path = Field(Path("runs"), description="crops and default event files go here")
    status_interval_s: float = Field(
        10.0, gt=0, le=3600, description="period of the status log line"
    )
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Prometheus endpoint port")
    crop_server: CropServer | None = Field(
        None, description="serve saved crops over signed, expiring links (`image_encoding: url`)"
    )
    cameras: dict[str, Camera] = Field(min_length=1)

    @model_validator(mode="after")
    def _url_images_need_the_server(self) -> EdgeConfig:
        for cid, cam in self.cameras.items():
            for sink in cam.sinks:
                if getattr(sink, "image_encoding", None) == "url" and self.crop_server is None:
                    raise ValueError(
                        f"camera {cid}: a {sink.type} sink with image_encoding url needs "
                        "crop_server (host, port, secret_env) to serve the links"
                    )
        return self

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, cameras: dict[str, Camera]) -> dict[str, Camera]:
        import re

        for cid in cameras:
            if not re.match(CAMERA_ID, cid):
                raise ValueError(
                    f"camera id {cid!r} must match {CAMERA_ID} (used in keys and paths)"
                )
        return cameras


def parse_config(data: object, source: str = "<config>") -> EdgeConfig:
    return parse_model(EdgeConfig, data, source)


def load_config(path: Path) -> EdgeConfig:
    return load_model(EdgeConfig, path)
