"""The command line ``python -m palmpay.synth {gallery,video,frame} ...``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import cv2

from palmpay.synth.clips import demo_clip, presentation_frames
from palmpay.synth.identity import HANDS, HandIdentity
from palmpay.synth.render import render_hand
from palmpay.synth.variation import Variation
from palmpay.synth.writers import write_gallery, write_video, write_y4m

__all__ = ["main"]

DESCRIPTION = "Deterministic synthetic hands, frames and videos for tests and the demo."


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m palmpay.synth {gallery,video,frame} ...`` (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m palmpay.synth", description=DESCRIPTION
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gallery", help="write <OUT>/<palm-id>/<n>.png hand photos")
    g.add_argument("out", type=Path)
    g.add_argument("--palms", type=int, default=20, help="number of identities (seeds 0..N-1)")
    g.add_argument("--first", type=int, default=0, help="first identity seed")
    g.add_argument("--samples", type=int, default=5, help="photos per palm")
    g.add_argument("--hands", default="right", help="comma list: right,left")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--sessions", type=int, default=0, help="split samples into sessions: s<k>_<n>.png"
    )
    v = sub.add_parser("video", help="write a presentation clip or the demo clip")
    v.add_argument("out", type=Path, help=".mp4, .avi or .y4m")
    v.add_argument("--identity", type=int, default=0, help="seed of the presented identity")
    v.add_argument(
        "--unknown", type=int, default=None, help="also present this identity (demo clip)"
    )
    v.add_argument("--frames", type=int, default=30, help="frames per presentation")
    v.add_argument("--empty", type=int, default=10, help="empty frames around (demo clip)")
    v.add_argument("--fps", type=int, default=15)
    v.add_argument("--seed", type=int, default=0)
    f = sub.add_parser("frame", help="write one PNG frame")
    f.add_argument("out", type=Path)
    f.add_argument("--identity", type=int, default=0)
    f.add_argument("--seed", type=int, default=0, help="variation seed")
    f.add_argument("--hand", default="right", choices=HANDS)
    f.add_argument("--palm-width", type=float, default=None, help="override the palm width (px)")
    for p in (g, v, f):
        p.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        size = tuple(int(s) for s in args.size.lower().split("x"))
        if len(size) != 2:
            raise ValueError
    except ValueError:
        parser.error(f"--size {args.size!r} must be WIDTHxHEIGHT")
    if args.cmd == "gallery":
        hands = tuple(s.strip() for s in args.hands.split(",") if s.strip())
        for hnd in hands:
            if hnd not in HANDS:
                parser.error(f"--hands: {hnd!r} is not one of {HANDS}")
        write_gallery(
            args.out,
            range(args.first, args.first + args.palms),
            args.samples,
            args.seed,
            hands=hands,
            size=size,
            sessions=args.sessions,
        )
    elif args.cmd == "video":
        ident = HandIdentity.from_seed(args.identity)
        if args.unknown is None:
            frames = presentation_frames(ident, args.frames, args.seed, size)
        else:
            frames = demo_clip(
                ident,
                HandIdentity.from_seed(args.unknown),
                args.seed,
                size,
                args.empty,
                args.frames,
            )
        if args.out.suffix.lower() == ".y4m":
            write_y4m(args.out, frames, args.fps)
        else:
            write_video(args.out, frames, args.fps)
    else:
        var = Variation.random(args.seed, size=size, hand=args.hand)
        if args.palm_width is not None:
            var = replace(var, palm_width_px=args.palm_width)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(
            str(args.out), render_hand(HandIdentity.from_seed(args.identity), var, size)
        ):
            raise RuntimeError(f"cv2.imwrite failed for {args.out}")
    return 0
