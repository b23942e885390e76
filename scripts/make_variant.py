#!/usr/bin/env python
"""Build a model repository variant (tensorrt | onnxruntime | python-net) into a folder.

python scripts/make_variant.py tensorrt /models --plan vehicle_detector.plan
tritonserver --model-repository /models
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ensemble.ops.variants import VariantError, assemble, available


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant", choices=available())
    parser.add_argument("out", type=Path)
    parser.add_argument("--plan", type=Path, help="TensorRT engine for the tensorrt variant")
    args = parser.parse_args()
    try:
        print(assemble(args.variant, args.out, plan=args.plan))
    except VariantError as exc:
        print(f"make_variant: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
