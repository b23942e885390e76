"""The synthetic demo video (``alpr_common.demo_video``: ``generate``, ``parse_plates``,
``DEFAULT_PLATES``, the ground-truth schema) and the edge config that plays it.

The generator lives in ``alpr_common`` because the server's provisioning renders from it
too (the int8 plate locator's calibration scene, ``ensemble/ops/quantize.py``).
"""

from __future__ import annotations

from pathlib import Path

from alpr_common.demo_video import DEFAULT_PLATES, generate, parse_plates

__all__ = ["DEFAULT_PLATES", "demo_edge_config", "generate", "parse_plates"]


def demo_edge_config(
    out: Path,
    video: Path,
    triton_url: str,
    redis_url: str,
    *,
    status_interval_s: float = 5,
    base: Path | None = None,
) -> Path:
    """``config/edge.yaml``'s ``demo`` camera on ``video``, its events to ``out/events.jsonl``
    and to the gate's Redis stream, crops under ``out/out``; written to
    ``out/edge-demo.yaml`` (used by the demo, the benchmarks and the end-to-end tests).
    ``base``: the config to take the camera from (default: the checkout's, found by
    ``ensemble.ops.checkout``)."""
    import yaml

    from ensemble.ops.checkout import checkout_root

    base = base or checkout_root() / "config" / "edge.yaml"
    cam = yaml.safe_load(base.read_text())["cameras"]["demo"]
    cam["source"] = str(video)
    cam["sinks"] = [
        {"type": "jsonl", "path": str(out / "events.jsonl")},
        {"type": "redis_stream", "stream": "alpr:events"},
    ]
    cfg = {
        "triton": {"urls": [triton_url]},
        "redis": {"url": redis_url},
        "output_dir": str(out / "out"),
        "status_interval_s": status_interval_s,
        "cameras": {"demo": cam},
    }
    path = out / "edge-demo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
