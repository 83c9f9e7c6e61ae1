"""Build the demo seed data from synthetic hands (no real palm image is shipped).

Writes, deterministically:

- ``seeds/gallery/<customer>/<n>.jpg``: enrollment photos of each seed customer's right hand;
- ``seeds/checkout.mp4``: the recorded checkout video — an enrolled customer presents a palm,
  then a shopper who never enrolled does;
- ``seeds/customers.json``: who is who (synthetic identity seed, display name, the expected
  decisions of the checkout video).

Run: ``.venv/bin/python seeds/build_seeds.py`` (the committed files are its output).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2

from palmpay import synth

SEEDS = Path(__file__).resolve().parent
# Card numbers are the networks' public test numbers (the simulated acquirer approves them).
CUSTOMERS = [
    {"handle": "ada", "name": "Ada Lovelace", "identity_seed": 101,
     "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030}},
    {"handle": "grace", "name": "Grace Hopper", "identity_seed": 102,
     "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2030}},
    {"handle": "alan", "name": "Alan Turing", "identity_seed": 103,
     "card": {"number": "378282246310005", "exp_month": 12, "exp_year": 2030}},
    {"handle": "katherine", "name": "Katherine Johnson", "identity_seed": 104,
     "card": {"number": "6011111111111117", "exp_month": 12, "exp_year": 2030}},
]
PAYING = "grace"  # the enrolled customer who pays in the checkout video
STRANGER_SEED = 9001  # a shopper who never enrolled
SAMPLES = 3


def build(out: Path) -> None:
    gallery = out / "gallery"
    shutil.rmtree(gallery, ignore_errors=True)
    for customer in CUSTOMERS:
        identity = synth.HandIdentity.from_seed(customer["identity_seed"])
        written = synth.write_gallery(gallery / "_tmp", [identity], SAMPLES, seed=7)
        folder = gallery / customer["handle"]
        folder.mkdir(parents=True)
        for path in next(iter(written.values())):
            image = cv2.imread(str(path))
            cv2.imwrite(str(folder / f"{path.stem}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        shutil.rmtree(gallery / "_tmp")
    paying = next(c for c in CUSTOMERS if c["handle"] == PAYING)
    frames = synth.demo_clip(
        synth.HandIdentity.from_seed(paying["identity_seed"]),
        synth.HandIdentity.from_seed(STRANGER_SEED),
        seed=11,
    )
    synth.write_video(out / "checkout.mp4", frames, fps=15)
    meta = {
        "customers": CUSTOMERS,
        "checkout_video": {
            "file": "checkout.mp4",
            "presentations": [
                {"decision": "match", "identity": PAYING, "amount": 1250, "currency": "eur"},
                {"decision": "unknown", "identity": None, "identity_seed": STRANGER_SEED,
                 "amount": 899, "currency": "eur"},
            ],
        },
        "note": "Synthetic customers. Card numbers are the networks' public test numbers; the "
        "simulated acquirer approves them.",
    }
    (out / "customers.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SEEDS)
    build(parser.parse_args().out)
