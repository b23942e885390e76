"""Golden end-to-end reads, one rendered plate per supported format family, through the
real server (`alpr` ensemble via AlprClient.read_plates) and the client's post-processing
(best plate, voting and format correction with the plate's region selected).

Plates are rendered with the demo's plate styles (Hershey font: O/0 and I/1 are drawn
alike, so the texts avoid them except where the format decides), warped into a vehicle
crop in mild perspective and roll, blurred, with sensor noise and JPEG compression.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TritonProcess
from synth import jpeg, place_plate

from alpr_common import demo_render as R
from edge_client.plates import load_formats, select
from edge_client.tools.evaluate import decide
from edge_client.triton_client import AlprClient
from ensemble.contracts import Box

pytestmark = pytest.mark.server

WHITE, INK = (245, 245, 245), (15, 15, 15)
EU_TEXT = (0.12, 0.14, 0.96, 0.86)


def eu(code: str) -> R.PlateStyle:
    """A white EU plate with the blue band and ``code``."""
    return R.PlateStyle(f"eu_{code.lower()}", "eu", (520, 110), WHITE, INK, EU_TEXT, (40, 88),
                        band=f"eu:{code}")  # fmt: skip


MOTO_UK = R.PlateStyle("uk_moto", "uk", (229, 178), R.YELLOW, INK, (0.07, 0.1, 0.93, 0.9), (40, 88))
MOTO_MERCOSUR = R.PlateStyle("mercosur_moto", "br", (200, 170), WHITE, INK,
                             (0.08, 0.3, 0.92, 0.92), (40, 88), band="top:BRASIL")  # fmt: skip

# (case id, region selected on the camera, style, printed text, expected plate, format)
GOLDEN = [
    ("uk", "uk", R.STYLES["uk_rear"], "KV65 BZR", "KV65BZR", "uk_current"),
    ("uk_front", "uk", R.STYLES["uk_front"], "WR18 KXG", "WR18KXG", "uk_current"),
    ("fr", "eu", R.STYLES["fr"], "FG-482-HK", "FG482HK", "fr_it_sk"),
    ("nl", "eu", R.STYLES["nl"], "47-TGK-8", "47TGK8", "nl_ddllld"),
    ("de", "eu", eu("D"), "M AB 1234", "MAB1234", "de_gr_llldddd"),
    ("de_short", "eu", eu("D"), "HH XY 58", "HHXY58", "de_nl_lllldd"),
    ("it", "eu", eu("I"), "EX 725 KM", "EX725KM", "fr_it_sk"),
    ("es", "eu", eu("E"), "2587 KTZ", "2587KTZ", "es"),
    ("pl", "eu", eu("PL"), "WX 52874", "WX52874", "pl_dk_llddddd"),
    ("fr_zero", "eu", R.STYLES["fr"], "GH-305-TW", "GH305TW", "fr_it_sk"),  # 0 by format
    ("us_ca", "us", R.STYLES["us"], "8KRW245", "8KRW245", "us_ca"),
    ("us_generic", "us", R.STYLES["us"], "KGT 3857", "KGT3857", "us_llldddd"),
    ("br_old", "br", R.STYLES["br_old"], "GKT-3857", "GKT3857", "br_old"),
    ("mercosur", "br", R.STYLES["mercosur"], "RTX4E26", "RTX4E26", "br_mercosur"),
    ("uk_moto", "uk", MOTO_UK, "AB12\nCDE", "AB12CDE", "uk_current"),
    ("mercosur_moto", "br", MOTO_MERCOSUR, "RTX\n4E26", "RTX4E26", "br_mercosur"),
]
FORMATS = load_formats()


def scene(style: R.PlateStyle, display: str, seed: int) -> tuple[np.ndarray, Box]:
    """The plate in a vehicle crop: 0.4 of the crop's width (0.25 for motorcycle plates),
    rolled up to 3 degrees, yaw up to 0.05, blur sigma 0.8, noise sigma 4."""
    rng = np.random.default_rng(seed)
    tex = R.render_plate(display, style, rng, "hershey")
    moto = "\n" in display
    img, (x, y, w, h) = place_plate(
        tex, width=160 if moto else 256, roll_deg=float(rng.uniform(-3, 3)),
        yaw=float(rng.uniform(-0.05, 0.05)), blur=0.8, noise=4.0, seed=seed,
    )  # fmt: skip
    return img, Box(x, y, x + w, y + h)


@pytest.fixture(scope="module")
def client(triton: TritonProcess) -> AlprClient:
    return AlprClient(triton.grpc_url)


@pytest.mark.parametrize(
    ("region", "style", "display", "plate", "fmt"),
    [pytest.param(*case[1:], id=case[0]) for case in GOLDEN],
)
def test_golden_plate(
    client: AlprClient, region: str, style: R.PlateStyle, display: str, plate: str, fmt: str
) -> None:
    img, box = scene(style, display, seed=sum(map(ord, plate)))
    reads = client.read_plates([jpeg(img, 85)])[0]
    result, best = decide(reads, select(FORMATS, [region]))
    assert best is not None, f"no plate-like read among {[r.text for r in reads]}"
    assert best.box.iou(box) > 0.4
    assert result is not None and result.plate == plate, (best.text, [r.text for r in reads])
    assert (result.region, result.format) == (region, fmt)


def test_golden_set_covers_every_region() -> None:
    assert {case[1] for case in GOLDEN} == {"uk", "eu", "us", "br"} <= set(FORMATS)
    for _, region, _, _, _, fmt in GOLDEN:
        assert fmt in {f.name for f in FORMATS[region]}
