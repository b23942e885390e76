"""`edge-client --camera cam1 [--config config/edge.yaml] [--source FILE|URL]`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from alpr_common import crop_server
from alpr_common.secrets import SecretError, secret_from_env
from alpr_common.sinks import SinkSet
from alpr_common.sinks.outbox import OutboxError
from edge_client.config import Camera, ConfigError, EdgeConfig, load_config
from edge_client.decoders import cpu_decoder
from edge_client.metrics import Metrics
from edge_client.pipeline import CameraPipeline, PipelineStats, Stages, mode_for
from edge_client.reader import ReadWorker
from edge_client.source import (
    SourceFactory,
    SourceKind,
    StreamTimeouts,
    VideoSourceFactory,
    probe_file,
    select_decoder,
    shown,
    source_kind,
)
from edge_client.state.cache import TrackCache
from edge_client.state.resume import ResumeState
from edge_client.streams import PairedSource, PairedSourceFactory
from edge_client.triton_client import AlprClient, TritonEndpoint
from ensemble.contracts import COCO_VEHICLE_CLASSES

log = logging.getLogger("ovr_alpr.edge")
# exit statuses: 0 done (file ended / stopped by a signal), 2 bad configuration or camera id,
# 3 Triton unreachable, 4 the source cannot be opened (a file; a live camera keeps retrying)
EXIT_CONFIG, EXIT_TRITON, EXIT_SOURCE = 2, 3, 4


def source_factory(cam: Camera) -> SourceFactory:
    """The camera's frames: its one stream, or the sub-stream paired with the main stream."""
    decoder = cpu_decoder(cam.decoder)
    timeouts = StreamTimeouts(cam.rtsp_open_timeout_s, cam.rtsp_read_timeout_s)
    detect = VideoSourceFactory(
        cam.source, process_every=cam.process_every, max_fps=cam.max_fps, loop=cam.loop,
        timeouts=timeouts, decoder=decoder, realtime=cam.realtime, speed=cam.playback_speed,
    )  # fmt: skip
    if cam.read_source is None:
        return detect
    read = VideoSourceFactory(
        cam.read_source, loop=cam.loop, timeouts=timeouts, decoder=decoder,
        realtime=cam.realtime, speed=cam.playback_speed,
    )  # fmt: skip
    m = cam.stream_match
    return PairedSourceFactory(detect, read, max_drift_s=m.max_drift_s, buffer=m.buffer)


def source_failed(camera: str, source: str, reason: str) -> int:
    """Say on stderr which source failed and why; the exit status for it."""
    print(f"edge-client: camera {camera}: cannot open {shown(source)}: {reason}", file=sys.stderr)
    return EXIT_SOURCE


def wait_for_triton(urls: list[str], timeout_s: float) -> str | None:
    """The first Triton URL that is ready within ``timeout_s`` (tried in order), or None."""
    deadline = time.monotonic() + timeout_s
    while True:
        for url in urls:
            client = AlprClient(url)
            try:
                if client.ready():
                    return url
            finally:
                client.close()
        if time.monotonic() >= deadline:
            return None
        time.sleep(1.0)


@dataclass
class EdgeRun:
    """A built camera pipeline and the real collaborators the CLI manages around it."""

    pipeline: CameraPipeline
    worker: ReadWorker
    sinks: SinkSet
    cache: TrackCache
    resume: ResumeState
    clients: tuple[AlprClient, ...] = ()  # closed at the end (shared-memory regions freed)


def build_pipeline(camera_id: str, cfg: EdgeConfig, triton_url: str, metrics: Metrics) -> EdgeRun:
    from alpr_common.redis_conn import connect
    from alpr_common.sinks import build_sinks
    from edge_client.plates.formats import load_formats, select
    from edge_client.tracking import ByteTracker

    cam = cfg.cameras[camera_id]
    mode = mode_for(cam)
    endpoint = TritonEndpoint(
        triton_url, cfg.triton.timeout_s, tuple(cfg.triton.urls), cfg.triton.balance_settings()
    )
    det_client = AlprClient(endpoint, shared_memory=cfg.triton.shared_memory)
    read_client = AlprClient(endpoint)
    metrics.watch_triton(camera_id, "detector", det_client.balancer)
    metrics.watch_triton(camera_id, "reader", read_client.balancer)
    formats = select(load_formats(), cam.regions)
    worker = ReadWorker(
        mode.reader(read_client, formats), max_batch=cfg.triton.max_batch,
        queue_size=cfg.triton.read_queue,
    )  # fmt: skip
    t = cam.tracking
    tracker = ByteTracker.from_config(t, min_hits=min(3, cam.thresholds.stable_frames))
    cache = TrackCache.from_config(cfg.redis)
    if not cache.available:
        log.warning(
            "Redis at %s is unreachable: running on a local buffer of %d updates; restart "
            "protection relies on the dedup window until Redis is back",
            cache.url, cfg.redis.local_buffer,
        )  # fmt: skip
    raw = connect(cfg.redis, socket_timeout=0.5)
    sinks = build_sinks(cam.sinks, camera=camera_id, redis_client=raw, output_dir=cfg.output_dir)
    metrics.watch_sinks(camera_id, sinks)
    resume = ResumeState(raw, camera_id, cam.source, cfg.redis.track_ttl_s)
    source = source_factory(cam)
    stages = Stages(
        detector=mode.detector(det_client), tracker=tracker, worker=worker.start(),
        cache=cache, sinks=sinks, resume=resume, source=source, formats=formats,
        metrics=metrics, labels=dict(COCO_VEHICLE_CLASSES),
    )  # fmt: skip
    pipeline = CameraPipeline(camera_id, cam, cfg, stages)
    return EdgeRun(pipeline, worker, sinks, cache, resume, (det_client, read_client))


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"edge-client: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.camera not in cfg.cameras:
        known = ", ".join(sorted(cfg.cameras))
        print(
            f"edge-client: camera {args.camera!r} is not in {args.config} (cameras: {known})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    cam = cfg.cameras[args.camera]
    overrides = {k: v for k, v in (("source", args.source), ("read_source", args.read_source)) if v}
    if overrides:
        cam = cam.model_copy(update=overrides)
        cfg = cfg.model_copy(update={"cameras": {**cfg.cameras, args.camera: cam}})
    if select_decoder(cam.decoder) == "nvdec":
        log.warning(
            "camera %s: NVDEC is available but this build decodes on the CPU (the NVDEC "
            "source is not implemented yet)", args.camera,
        )  # fmt: skip
    for stream in (cam.source, cam.read_source):  # before waiting for Triton: fail fast
        if stream is not None and source_kind(stream) is SourceKind.FILE:
            problem = probe_file(stream)
            if problem is not None:
                return source_failed(args.camera, stream, problem)
    url = wait_for_triton(cfg.triton.urls, args.wait_triton)
    if url is None:
        print(
            f"edge-client: Triton is not reachable at {', '.join(cfg.triton.urls)} (waited "
            f"{args.wait_triton:.0f}s). Start it with `tritonserver --model-repository "
            "model_repository` or fix triton.urls in the config.",
            file=sys.stderr,
        )
        return EXIT_TRITON
    metrics = Metrics()
    if cfg.metrics_port:
        metrics.serve(cfg.metrics_port)
        log.info("metrics on :%d/metrics", cfg.metrics_port)
    crop_links = None
    if cfg.crop_server is not None:
        cs = cfg.crop_server
        try:
            secret = secret_from_env(cs.secret_env, "crop server link secret")
        except SecretError as exc:
            print(f"edge-client: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        assert secret is not None
        crop_links = crop_server.start(cs.host, cs.port, cfg.output_dir / "crops", secret)
    try:
        edge = build_pipeline(args.camera, cfg, url, metrics)
    except (ValueError, OutboxError, OSError) as exc:  # a sink that cannot start: credentials,
        # TLS files, a locked or corrupt webhook outbox, an unwritable output folder
        print(f"edge-client: camera {args.camera}: cannot start: {exc}", file=sys.stderr)
        if crop_links is not None:
            crop_links.stop()
        return EXIT_CONFIG
    pipeline = edge.pipeline
    if args.fresh:
        edge.cache.purge(args.camera)
        edge.resume.clear()
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after the current frame", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cpu0 = time.process_time()
    stats: PipelineStats = pipeline.run(stop)
    cpu_s = time.process_time() - cpu0  # every thread of the process, start-up excluded
    src = pipeline.source
    source_error = src.stats.open_error if src is not None else None
    if isinstance(src, PairedSource) and source_error is None:
        source_error = src.read_stats.open_error
    fps = pipeline.fps()
    edge.worker.stop()
    edge.sinks.close()
    if crop_links is not None:
        crop_links.stop()
    for client in edge.clients:
        client.close()
    if args.summary:
        import json
        from dataclasses import asdict

        summary = {
            **asdict(stats),
            "fps": fps,
            "steady_fps": stats.steady_fps(),
            "cpu_s": cpu_s,
            "camera": args.camera,
            "read_requests": edge.worker.requests,
            "sinks": edge.sinks.stats(),
            "source_error": source_error,
            "last_frame": pipeline.last_frame,
            "decode": asdict(src.stats.decode) if src is not None else None,
        }
        if isinstance(src, PairedSource):
            summary["read_decode"] = asdict(src.read_stats.decode)
            summary["stream_match"] = asdict(src.matcher.stats)
        summary.pop("started", None)
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        args.summary.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    log.info(
        "camera %s: done: %d frames (%.1f fps), %d tracks, %d OCR reads, %d events, %d duplicates "
        "suppressed", args.camera, stats.frames, fps, stats.tracks, stats.reads,
        stats.events, stats.duplicates,
    )  # fmt: skip
    if source_error is not None and not stop.is_set():
        return source_failed(args.camera, cam.source, source_error)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edge-client", description=__doc__)
    parser.add_argument("--camera", required=True, help="camera id from the config")
    parser.add_argument("--config", type=Path, default=Path("config/edge.yaml"))
    parser.add_argument(
        "--source", help="override the camera's source (file, rtsp://, /dev/videoN)"
    )
    parser.add_argument("--read-source", help="override the camera's read_source (main stream)")
    parser.add_argument(
        "--wait-triton", type=float, default=30.0, help="seconds to wait for Triton"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="forget this camera's cached state first"
    )
    parser.add_argument("--summary", type=Path, help="write run statistics (JSON) here at the end")
    parser.add_argument("--log-level", default=os.environ.get("ALPR_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
