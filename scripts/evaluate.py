#!/usr/bin/env python
"""Accuracy evaluator (also `alpr-evaluate`).

    alpr-evaluate photos ../shared/data/openalpr-eu --url localhost:8001 --regions eu uk
    alpr-evaluate photos DIR --start-server          # starts its own tritonserver
    alpr-evaluate video --events runs/demo/events.jsonl --truth runs/demo/demo.truth.json

Photos: exact-match accuracy, plate detection recall (IoU >= 0.5 with the labelled box),
character accuracy, time per image and the misses; writes results.json, report.html
(misses with crops) and chart.png to --out, and a summary JSON to --summary.
"""

from edge_client.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
