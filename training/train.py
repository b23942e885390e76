"""Training run of the plate recogniser, inside the torch environment.

    python -m training.train JOB.json

``JOB.json`` is the resolved, validated job that ``alpr-train ocr`` writes (see
``training.config``). The run is seeded (Python, NumPy, torch; one generator per data
stream), renders its synthetic plates once, then trains with CTC on batches that mix
the real crop sets and the synthetic plates by weight, each sample a fresh random view
(``training.augment``). It writes ``plate_rec.onnx`` (probabilities [N, T, classes],
metadata: alphabet, input size, format tag) and ``train_log.json`` (losses, periodic
validation exact-match per set, timing) into the job's output folder.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ensemble import plate_rec

from . import augment, synth
from .data import Sample, load_dataset, read_image, split
from .model import PlateCTC, Served


def encode(text: str, alphabet: str) -> list[int]:
    return [alphabet.index(c) + 1 for c in text]


def greedy(probs: np.ndarray, alphabet: str) -> list[str]:
    out = []
    for row in probs.argmax(-1):
        chars, prev = [], 0
        for k in row:
            if k != prev and k != 0:
                chars.append(alphabet[k - 1])
            prev = k
        out.append("".join(chars))
    return out


class Source:
    """One weighted stream of (image, text box or None, text)."""

    def __init__(self, name: str, items: list[tuple[np.ndarray, Any, str]], weight: float):
        self.name, self.items, self.weight = name, items, weight


def _load_real(samples: list[Sample]) -> list[tuple[np.ndarray, Any, str]]:
    return [(read_image(s.path), None, s.text) for s in samples]


def _synthetic(count: int, seed: int, height: int) -> list[tuple[np.ndarray, Any, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        p = synth.render(rng, height)
        out.append((p.image, p.text_box, p.text))
    return out


def state_from_onnx(path: Path) -> dict[str, torch.Tensor]:
    """Parameters of a recogniser exported by this module (initialisers keep the torch
    names), to fine-tune a shipped model on a site's own crops."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    state = {}
    for init in model.graph.initializer:
        name = init.name.removeprefix("net.")
        state[name] = torch.from_numpy(numpy_helper.to_array(init).copy())
    return state


def evaluate(
    net: nn.Module, views: list[np.ndarray], texts: list[str], alphabet: str, size: tuple[int, int]
) -> float:
    if not views:
        return float("nan")
    net.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(views), 128):
            x = torch.from_numpy(plate_rec.to_input(views[i : i + 128], *size))
            probs = torch.softmax(net(x), -1).numpy()
            right += sum(
                a == b for a, b in zip(greedy(probs, alphabet), texts[i : i + 128], strict=True)
            )
    net.train()
    return right / len(views)


def export(net: PlateCTC, out: Path, alphabet: str, size: tuple[int, int]) -> None:
    import onnx

    net.eval()
    served = Served(net)
    dummy = torch.zeros(1, 3, *size)
    tmp = out.with_suffix(".tmp.onnx")
    torch.onnx.export(
        served,
        (dummy,),
        str(tmp),
        input_names=["x"],
        output_names=["probs"],
        dynamic_axes={"x": {0: "batch"}, "probs": {0: "batch"}},
        opset_version=17,
        dynamo=False,
        do_constant_folding=True,
    )
    model = onnx.load(str(tmp))
    meta = {
        plate_rec.METADATA_FORMAT: plate_rec.FORMAT_TAG,
        plate_rec.METADATA_ALPHABET: alphabet,
        plate_rec.METADATA_HEIGHT: str(size[0]),
        plate_rec.METADATA_WIDTH: str(size[1]),
    }
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    tmp.unlink()


def run(job: dict[str, Any]) -> dict[str, Any]:
    seed = int(job["seed"])
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.set_num_threads(int(job["threads"]))
    alphabet: str = job["alphabet"]
    size = (int(job["height"]), int(job["width"]))
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    sources: list[Source] = []
    val: dict[str, tuple[list[np.ndarray], list[str]]] = {}
    for spec in job["sets"]:
        samples = load_dataset(
            Path(spec["folder"]),
            alphabet,
            labels=spec["labels"],
            name=spec["name"],
            check_images=False,
        )
        train_s, val_s = split(samples, int(job["val_percent"]))
        if train_s:
            sources.append(Source(spec["name"], _load_real(train_s), float(spec["weight"])))
        if val_s:
            val[spec["name"]] = (
                [augment.served_view(read_image(s.path)) for s in val_s],
                [s.text for s in val_s],
            )
    syn = job["synthetic"]
    if int(syn["count"]) > 0:
        sources.append(
            Source(
                "synthetic",
                _synthetic(int(syn["count"]), seed + 1, int(syn["height"])),
                float(syn["weight"]),
            )
        )
    if int(syn.get("val_count", 0)) > 0:
        vrng = np.random.default_rng(seed + 2)
        plates = _synthetic(int(syn["val_count"]), seed + 3, int(syn["height"]))
        val["synthetic"] = (
            [augment.view(im, box, vrng) for im, box, _ in plates],
            [t for _, _, t in plates],
        )
    if not sources:
        raise SystemExit("no training data: every set is empty and synthetic.count is 0")
    render_s = time.time() - t0
    print(
        f"[train] data ready in {render_s:.0f}s: "
        + ", ".join(f"{s.name}={len(s.items)}" for s in sources)
        + "; val "
        + ", ".join(f"{k}={len(v[1])}" for k, v in val.items()),
        file=sys.stderr,
        flush=True,
    )

    net = PlateCTC(
        len(alphabet) + 1, job["channels"], float(job["dropout"]), int(job.get("time_pool", 4))
    )
    if job.get("init_from"):
        missing = net.load_state_dict(state_from_onnx(Path(job["init_from"])), strict=False)
        print(f"[train] initialised from {job['init_from']} ({missing})", file=sys.stderr)
    steps, batch = int(job["steps"]), int(job["batch"])
    opt = torch.optim.AdamW(
        net.parameters(), lr=float(job["lr"]), weight_decay=float(job["weight_decay"])
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=float(job["lr"]), total_steps=steps, pct_start=0.08
    )
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    weights = np.array([s.weight for s in sources], np.float64)
    weights /= weights.sum()
    rng = np.random.default_rng(seed + 4)
    log: dict[str, Any] = {"steps": [], "val": [], "render_s": render_s}
    budget = float(job["max_minutes"]) * 60.0
    net.train()
    t_train = time.time()
    done = 0
    for step in range(1, steps + 1):
        picks = rng.choice(len(sources), size=batch, p=weights)
        views, texts = [], []
        for k in picks:
            img, box, text = sources[k].items[int(rng.integers(len(sources[k].items)))]
            views.append(augment.view(img, box, rng))
            texts.append(text)
        x = torch.from_numpy(plate_rec.to_input(views, *size))
        targets = torch.tensor([i for t in texts for i in encode(t, alphabet)], dtype=torch.long)
        lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)
        logp = net(x).log_softmax(-1).permute(1, 0, 2)  # [T, N, C]
        in_len = torch.full((batch,), logp.shape[0], dtype=torch.long)
        loss = ctc(logp, targets, in_len, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        sched.step()
        done = step
        if step % 50 == 0:
            log["steps"].append(
                {"step": step, "loss": round(loss.item(), 4), "s": round(time.time() - t_train, 1)}
            )
        if step % int(job["eval_every"]) == 0 or step == steps:
            scores = {
                k: round(evaluate(net, v[0], v[1], alphabet, size), 4) for k, v in val.items()
            }
            log["val"].append({"step": step, **scores})
            rate = (time.time() - t_train) / step
            print(
                f"[train] step {step}/{steps} loss {loss.item():.3f} val {scores} "
                f"({rate * 1000:.0f} ms/step)",
                file=sys.stderr,
                flush=True,
            )
        if time.time() - t_train > budget:
            print(
                f"[train] time budget of {job['max_minutes']} min reached at step {step}",
                file=sys.stderr,
            )
            break
    log["steps_done"] = done
    log["stopped_early"] = done < steps
    log["train_s"] = round(time.time() - t_train, 1)
    log["ms_per_sample"] = round(1000 * (time.time() - t_train) / max(1, done * batch), 2)
    if math.isnan(loss.item()):
        raise SystemExit("training diverged (loss is NaN)")
    export(net, out / "plate_rec.onnx", alphabet, size)
    torch.save(net.state_dict(), out / "plate_rec.pt")
    (out / "train_log.json").write_text(json.dumps(log, indent=1) + "\n")
    return log


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m training.train JOB.json", file=sys.stderr)
        return 2
    run(json.loads(Path(args[0]).read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
