"""Presentation attacks (ISO/IEC 30107-3) and bona fide presentations for the liveness check.

    .venv/bin/python scripts/security/build_attacks.py --out /tmp/palmpay-attacks
    .venv/bin/python scripts/security/build_attacks.py --out DIR --people 10 --synth 5

Writes ``<out>/<source>/<kind>/<name>/frame-<i>.jpg`` (not committed: coep-dev photos are
real people's palms and stay in ../shared/data), one folder per presentation of ``--frames``
camera frames (4, like the checkout), for ``source`` in ``coep`` (coep-dev photo 1 of each
person; the bona fide are the person's 4 stills) and ``synth`` (palmpay.synth hands).

Attack instruments (each frame then goes through :func:`camera`: sensor noise and JPEG):

- ``still_replay``: one photo shown as a video: N identical frames.
- ``loop``: a short sequence (2 frames) played in a loop, so the burst repeats itself.
- ``screen``: the photo on a phone screen: resampled onto a rotated pixel grid of RGB stripes
  with a black matrix (finer than the camera's pixels, so the camera aliases it: moiré), the
  screen's gamma and colour, a glare patch (a reflection on the glass) and the phone's bezel;
  the phone shakes by sub-pixel steps.
- ``rigid_print``: the photo printed (reduced contrast) and moved rigidly in front of the
  camera: a smooth sequence of homographies (translation, rotation, scale, a little tilt).

Bona fide: ``articulated`` synthetic clips (the hand's finger and thumb angles wander a few
degrees from frame to frame, on top of the hold tremor of ``presentation_frames``), ``rigid``
synthetic clips (``palmpay.synth.presentation_frames`` hold phase: the rendered hand is a flat
canvas, so this is a print geometrically), and ``coep`` (a person's 4 stills: real hands
re-placed on the pegs between shots, not a video).

The functions are what ``scripts/security/liveness_eval.py`` and ``tests/test_liveness.py``
use; every one takes a seed or a generator and is deterministic.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from palmpay import synth

__all__ = [
    "ATTACKS",
    "articulated_clip",
    "camera",
    "coep_people",
    "coep_presentations",
    "coep_stills",
    "loop",
    "main",
    "rigid_clip",
    "presentations",
    "rigid_print",
    "screen_replay",
    "still_replay",
    "synth_presentations",
    "synth_still",
]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_COEP = REPO.parent / "shared/data/coep-dev"
#: Camera frame size (width, height) of every presentation.
SIZE = (640, 480)
ATTACKS = ("still_replay", "loop", "screen", "rigid_print")
#: Screen supersampling: camera pixels are integrated over SS x SS samples.
SS = 3
#: Calm poses for synthetic hands (palm width kept <= 160 px: the cheap canvas level).
CALM = replace(synth.TEST_RANGES, palm_width_px=(125.0, 160.0), blur_sigma=(0.0, 0.6),
               noise_std=(1.0, 3.0), tilt_deg=6.0)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def camera(image: np.ndarray, rng: np.random.Generator, noise: tuple[float, float] = (1.0, 3.0),
           quality: tuple[int, int] = (85, 93)) -> np.ndarray:
    """What a webcam adds to a scene: Gaussian sensor noise and a JPEG round trip."""
    img = image.astype(np.float32) + rng.normal(0.0, rng.uniform(*noise), image.shape)
    img8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", img8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(*quality))])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def fit(image: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    """``image`` resized to the camera frame size (aspect kept, letterboxed in dark grey)."""
    w, h = size
    f = min(w / image.shape[1], h / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * f), round(image.shape[0] * f)),
                       interpolation=cv2.INTER_AREA)
    out = np.full((h, w, 3), 20, np.uint8)
    y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return out


# -- attack instruments ------------------------------------------------------------------------
def still_replay(image: np.ndarray, n: int, seed: int | np.random.Generator) -> list[np.ndarray]:
    """A still photo replayed as a video: ``n`` identical frames, each with fresh camera noise."""
    rng = _rng(seed)
    return [camera(image, rng) for _ in range(n)]


def loop(sequence: list[np.ndarray], n: int, seed: int | np.random.Generator,
         period: int = 2) -> list[np.ndarray]:
    """The first ``period`` frames of ``sequence`` played in a loop for ``n`` frames."""
    rng = _rng(seed)
    return [camera(sequence[i % period], rng) for i in range(n)]


def rigid_print(image: np.ndarray, n: int, seed: int | np.random.Generator) -> list[np.ndarray]:
    """A print of ``image`` moved rigidly: a smooth path of homographies between two random
    poses (±25 px, ±6°, ±6 % scale, up to ±8° of tilt), over a plain background."""
    rng = _rng(seed)
    h, w = image.shape[:2]
    printed = image.astype(np.float32) * 0.85 + 18.0  # paper: less contrast than the scene
    bg = np.full((h, w, 3), rng.uniform(60, 150, 3), np.float32)
    ends = [(rng.uniform(-25, 25, 2), rng.uniform(-6, 6), rng.uniform(0.94, 1.06),
             rng.uniform(-8, 8, 2)) for _ in range(2)]
    frames = []
    for i in range(n):
        t = 0.5 - 0.5 * math.cos(math.pi * i / max(n - 1, 1))  # eased path
        shift = ends[0][0] * (1 - t) + ends[1][0] * t
        rot = ends[0][1] * (1 - t) + ends[1][1] * t
        scale = ends[0][2] * (1 - t) + ends[1][2] * t
        tilt = ends[0][3] * (1 - t) + ends[1][3] * t
        hmat = _plane_homography(w, h, shift, rot, scale, tilt)
        sheet = cv2.warpPerspective(printed, hmat, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))
        scene = np.where(sheet < 0, bg, sheet)
        frames.append(camera(scene, rng))
    return frames


def _plane_homography(w: int, h: int, shift: np.ndarray, rot_deg: float, scale: float,
                      tilt_deg: np.ndarray) -> np.ndarray:
    """Frame → frame homography of a plane at the frame's centre: tilt, rotation, scale, shift."""
    f = 1.1 * max(w, h)
    ax, ay = (math.radians(float(a)) for a in tilt_deg)
    rz = math.radians(rot_deg)
    r_x = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    r_y = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    r_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    rot = r_z @ r_x @ r_y
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    plane = (corners - [w / 2, h / 2]) * scale
    pts = np.c_[plane, np.zeros(4)] @ rot.T
    pts[:, 2] += f
    dst = np.c_[f * pts[:, 0] / pts[:, 2] + w / 2 + shift[0], f * pts[:, 1] / pts[:, 2] + h / 2
                + shift[1]]
    return cv2.getPerspectiveTransform(corners.astype(np.float32), dst.astype(np.float32))


def screen_replay(image: np.ndarray, n: int, seed: int | np.random.Generator,
                  defocus: float | None = None) -> list[np.ndarray]:
    """``image`` shown on a phone screen held in front of the camera (see the module doc);
    ``defocus`` is the lens blur in camera pixels (drawn from 0.4-1.2 when None: the more, the
    fainter the moiré)."""
    rng = _rng(seed)
    h, w = image.shape[:2]
    pitch = float(rng.uniform(0.4, 0.8))  # screen pixel pitch in camera pixels
    angle = math.radians(float(rng.uniform(-4.0, 4.0)))
    bezel = int(rng.integers(int(0.03 * w), int(0.08 * w)))
    gamma = float(rng.uniform(0.8, 1.25))
    tint = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    # The screen shows the photo over the area inside the bezel, at its own resolution.
    sw, sh = w - 2 * bezel, h - 2 * bezel
    cols, rows = int(sw / pitch), int(sh / pitch)
    shown = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
    shown = 255.0 * (shown / 255.0) ** gamma * tint
    margin = 4 * SS  # room for the shake
    yy, xx = np.mgrid[0:(h * SS + 2 * margin), 0:(w * SS + 2 * margin)].astype(np.float32)
    xs, ys = (xx - margin + 0.5) / SS - w / 2, (yy - margin + 0.5) / SS - h / 2
    u = (math.cos(angle) * xs + math.sin(angle) * ys) / pitch + cols / 2
    v = (-math.sin(angle) * xs + math.cos(angle) * ys) / pitch + rows / 2
    iu, iv = np.floor(u).astype(np.int32), np.floor(v).astype(np.int32)
    fu, fv = u - iu, v - iv
    inside = (iu >= 0) & (iu < cols) & (iv >= 0) & (iv < rows)
    colour = shown[np.clip(iv, 0, rows - 1), np.clip(iu, 0, cols - 1)]
    lit = np.stack([(fu >= c / 3 + 0.02) & (fu < (c + 1) / 3 - 0.04) for c in range(3)], axis=-1)
    lit &= (fv >= 0.08)[..., None] & (fv < 0.92)[..., None]
    radiance = np.where(inside[..., None], colour * lit * 3.6, 8.0).astype(np.float32)
    # Glare: a soft reflection of a light on the glass, somewhere on the screen.
    gx, gy = rng.uniform(0.2, 0.8) * w * SS, rng.uniform(0.2, 0.8) * h * SS
    gr = rng.uniform(0.04, 0.12) * w * SS
    glare = rng.uniform(100, 300) * np.exp(-(((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * gr * gr)))
    radiance = radiance + glare[..., None] * inside[..., None]
    blur = float(rng.uniform(0.4, 1.2)) if defocus is None else defocus
    radiance = cv2.GaussianBlur(radiance, (0, 0), blur * SS)
    frames, dx, dy = [], 0, 0
    for _ in range(n):
        dx = int(np.clip(dx + rng.integers(-1, 2), -margin, margin))
        dy = int(np.clip(dy + rng.integers(-1, 2), -margin, margin))
        crop = radiance[margin + dy:margin + dy + h * SS, margin + dx:margin + dx + w * SS]
        frames.append(camera(cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA), rng))
    return frames


# -- bona fide and attack sources ----------------------------------------------------------------
def _calm(identity: synth.HandIdentity, rng: np.random.Generator) -> synth.Variation:
    return synth.Variation.random(rng, CALM, size=SIZE, hand="right")


def synth_still(seed: int) -> np.ndarray:
    """A clean synthetic photo of hand ``seed`` (the attacker's source picture)."""
    identity = synth.HandIdentity.from_seed(seed)
    return synth.render_hand(identity, _calm(identity, np.random.default_rng(seed)), SIZE)


def articulated_clip(seed: int, n: int, clip_seed: int = 0, degrees: float = 3.0
                     ) -> list[np.ndarray]:
    """A synthetic live hand held in front of the camera: the hold tremor of
    ``presentation_frames`` (±4 px, ±1.5°, ±2 % scale) and, per frame, every finger's angle and
    the thumb's wandering by a random walk of ``degrees`` per step (articulation)."""
    identity = synth.HandIdentity.from_seed(seed)
    rng = np.random.default_rng([seed, clip_seed])
    base = _calm(identity, rng)
    fingers = np.array(identity.finger_angles)
    thumb = identity.thumb_angle
    frames = []
    for _ in range(n):
        fingers = fingers + rng.normal(0.0, degrees, 4)
        thumb = thumb + float(rng.normal(0.0, degrees))
        pose = replace(identity, finger_angles=tuple(float(a) for a in fingers),
                       thumb_angle=thumb)
        j = rng.uniform(-1.0, 1.0, 4)
        var = replace(base, center=(base.center[0] + j[0] * 4 / SIZE[0],
                                    base.center[1] + j[1] * 4 / SIZE[1]),
                      rotation_deg=base.rotation_deg + 1.5 * j[2],
                      palm_width_px=base.palm_width_px * (1 + 0.02 * j[3]),
                      noise_seed=int(rng.integers(0, 2**31)))
        frames.append(camera(synth.render_hand(pose, var, SIZE), rng))
    return frames


def rigid_clip(seed: int, n: int, clip_seed: int = 0) -> list[np.ndarray]:
    """The hold phase of ``palmpay.synth.presentation_frames`` (tremor, no articulation)."""
    identity = synth.HandIdentity.from_seed(seed)
    rng = np.random.default_rng([seed, clip_seed, 1])
    frames = synth.presentation_frames(identity, n, seed=clip_seed, base=_calm(identity, rng),
                                       enter_fraction=0.0, leave_fraction=0.0)
    return [camera(f, rng) for f in frames]


def coep_people(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def coep_stills(person: Path, seed: int | np.random.Generator) -> list[np.ndarray]:
    """A person's 4 coep-dev stills at camera size, through the camera (a real hand, but four
    separate shots, not a video)."""
    rng = _rng(seed)
    return [camera(fit(cv2.imread(str(p), cv2.IMREAD_COLOR)), rng)
            for p in sorted(person.glob("*.jpg"))]


def attack(kind: str, photo: np.ndarray, sequence: list[np.ndarray], n: int,
           seed: int) -> list[np.ndarray]:
    """Frames of attack ``kind`` from a source ``photo`` (and ``sequence`` for ``loop``)."""
    if kind == "still_replay":
        return still_replay(photo, n, seed)
    if kind == "loop":
        return loop(sequence, n, seed)
    if kind == "screen":
        return screen_replay(photo, n, seed)
    if kind == "rigid_print":
        return rigid_print(photo, n, seed)
    raise ValueError(f"unknown attack {kind!r}; one of {ATTACKS}")


def coep_presentations(person: Path, k: int, n: int):
    """Yield ``("coep", kind, name, frames)``: person ``k``'s bona fide stills and the attacks
    made from their photo 1 (the loop plays their stills 1 and 2)."""
    stills = coep_stills(person, k)
    yield "coep", "bona_fide", person.name, stills[:n]
    photo = fit(cv2.imread(str(sorted(person.glob("*.jpg"))[0]), cv2.IMREAD_COLOR))
    for a, kind in enumerate(ATTACKS):
        yield "coep", kind, person.name, attack(kind, photo, stills, n, 1000 * k + a)


def synth_presentations(seed: int, n: int):
    """Yield ``("synth", kind, name, frames)``: hand ``seed``'s articulated and rigid clips and
    the attacks made from a still of it (the loop plays the articulated clip's first 2)."""
    live = articulated_clip(seed, n)
    yield "synth", "articulated", str(seed), live
    yield "synth", "rigid", str(seed), rigid_clip(seed, n)
    photo = synth_still(seed)
    for a, kind in enumerate(ATTACKS):
        yield "synth", kind, str(seed), attack(kind, photo, live, n, 5000 + 10 * seed + a)


def presentations(coep: Path | None, people: int, synth_n: int, n: int):
    """Yield ``(source, kind, name, frames)``: every bona fide and attack presentation."""
    if coep is not None and coep.is_dir():
        for k, person in enumerate(coep_people(coep)[:people]):
            yield from coep_presentations(person, k, n)
    for seed in range(1, synth_n + 1):
        yield from synth_presentations(seed, n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write (not the repo)")
    parser.add_argument("--coep", type=Path, default=DEFAULT_COEP, help="coep-dev folder")
    parser.add_argument("--people", type=int, default=61, help="coep-dev people to use")
    parser.add_argument("--synth", type=int, default=30, help="synthetic hands")
    parser.add_argument("--frames", type=int, default=4, help="frames per presentation")
    args = parser.parse_args(argv)
    count = 0
    for source, kind, name, frames in presentations(args.coep, args.people, args.synth,
                                                    args.frames):
        folder = args.out / source / kind / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"frame-{i}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        count += 1
    print(f"{count} presentations written under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
