#!/usr/bin/env python
"""Demo: start tritonserver on the model repository and read plates end to end.

Reads sample images (rendered plates, plus the OpenALPR EU photographs when
../shared/data/openalpr-eu exists, or your own with --images) through the real server:
vehicle_detector on the frame, then the `alpr` ensemble on each vehicle crop (or the
whole image when no vehicle is found). Prints one JSON line per image and writes them to
runs/demo/reads.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from edge_client.triton_client import AlprClient  # noqa: E402
from ensemble.image_io import encode_jpeg  # noqa: E402
from ensemble.plates import best_plate  # noqa: E402
from ensemble.server_process import start_triton  # noqa: E402


def samples(extra: list[Path], limit: int) -> list[tuple[str, bytes]]:
    from synth import jpeg, render_vehicle

    out = [(f"rendered:{t}", jpeg(render_vehicle(t)[0])) for t in ("AB123CD", "7ABC123")]
    shared = REPO.parent / "shared" / "data" / "openalpr-eu"
    files = list(extra) or (sorted(shared.glob("*.jpg"))[:limit] if shared.is_dir() else [])
    out += [(p.name, p.read_bytes()) for p in files]
    return out


def read_one(client: AlprClient, name: str, data: bytes) -> dict[str, object]:
    t0 = time.perf_counter()
    frame = cv2.imdecode(__import__("numpy").frombuffer(data, "uint8"), cv2.IMREAD_COLOR)
    vehicles = client.detect_vehicles([frame])[0]
    crops, origins = [], []
    for v in vehicles[:4]:
        x1, y1, x2, y2 = (int(c) for c in (v.box.x1, v.box.y1, v.box.x2, v.box.y2))
        crops.append(encode_jpeg(frame[y1:y2, x1:x2], 85))
        origins.append((x1, y1, v.label))
    if not crops:
        crops, origins = [data], [(0, 0, "frame")]
    best, where = None, origins[0]
    for reads, origin in zip(client.read_plates(crops), origins, strict=True):
        cand = best_plate(reads)
        if cand and (best is None or cand.confidence > best.confidence):
            best, where = cand, origin
    return {
        "image": name,
        "vehicles": len(vehicles),
        "plate": best.text if best else None,
        "confidence": round(best.confidence, 4) if best else None,
        "vehicle": where[2],
        "box": [round(where[0] + best.box.x1), round(where[1] + best.box.y1),
                round(where[0] + best.box.x2), round(where[1] + best.box.y2)] if best else None,
        "ms": round(1000 * (time.perf_counter() - t0), 1),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, nargs="*", default=[], help="your own photos")
    parser.add_argument("--limit", type=int, default=10, help="how many shared photos to read")
    parser.add_argument("--url", help="use a running server (host:grpc_port) instead")
    args = parser.parse_args()
    out_dir = REPO / "runs" / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    server = None
    if not args.url:
        print("starting tritonserver (model_repository/) ...", file=sys.stderr)
        server = start_triton(REPO / "model_repository", out_dir / "tritonserver.log")
    url = args.url or server.grpc_url  # type: ignore[union-attr]
    try:
        client = AlprClient(url)
        with (out_dir / "reads.jsonl").open("w") as f:
            for name, data in samples(args.images, args.limit):
                line = json.dumps(read_one(client, name, data))
                print(line)
                f.write(line + "\n")
    finally:
        if server:
            server.stop()
    print(f"wrote {out_dir / 'reads.jsonl'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
