"""Deterministic synthetic hands, frames and videos for tests and the demo.

Real palm datasets cannot be shipped, so everything that needs a "camera image of a hand" — unit
tests, end-to-end tests, the demo clip, the fake camera for the browser — is rendered here from an
integer seed. Nothing in this module is random unless a seed says so: the same seed (and the same
:class:`Variation`) always gives bit-identical frames.

Model
-----
A :class:`HandIdentity` is a person: hand proportions (palm width to finger lengths, finger
spread, thumb angle), skin tone, and — per hand — a palm-print pattern: the three principal lines
(heart, head, life) as smooth random curves, a few minor lines and a couple of hundred fine
creases laid out along an identity-specific orientation field. As in biometric datasets, each
``(identity, hand)`` pair is its own palm: the left palm print is *not* the mirror of the right
one (real people's are not either), but the left *hand* is rendered geometrically correct, as the
mirror image of the right hand (a left palm seen by a camera is the mirror image of a right palm),
so with equal proportions a left hand's silhouette is exactly the flipped right one.

A hand is rendered once per identity and hand into a canonical, upright "canvas" (colour + alpha,
a 2.5-D height field shaded by a directional light, finger-joint creases, skin mottling and the
palm print) and cached; a :class:`Variation` then places that canvas in the frame with a
perspective warp (in-plane rotation, optional out-of-plane tilt, scale, position) over a
background, and applies scene lighting, blur and sensor noise.

The canonical coordinate system has its origin at the palm centre and the palm width as unit; +y
points from the fingers to the wrist. For a right hand seen palm-on the thumb is at +x (image
right), fingers at -y.

Entry points: :func:`render_hand`, :func:`render_no_hand`, :func:`presentation_frames`,
:func:`demo_clip`, :func:`write_video`, :func:`write_y4m`, :func:`write_gallery`, and the
command line ``python -m palmpay.synth {gallery,video,frame} ...``, all importable from this
package.

Modules
-------
:mod:`~palmpay.synth.identity` (:class:`HandIdentity`, :func:`palm_id`, seeded generators),
:mod:`~palmpay.synth.variation` (:class:`Variation`, :class:`VariationRanges`),
:mod:`~palmpay.synth.shapes` (canonical geometry), :mod:`~palmpay.synth.palmprint` (palm print
and finger creases), :mod:`~palmpay.synth.canvas` (the cached canonical canvas),
:mod:`~palmpay.synth.render` (frames), :mod:`~palmpay.synth.clips` (presentations, the demo
clip), :mod:`~palmpay.synth.writers` (video and gallery files), :mod:`~palmpay.synth.cli`.
"""

from __future__ import annotations

from palmpay.synth.cli import main
from palmpay.synth.clips import demo_clip, presentation_frames
from palmpay.synth.identity import HANDS, HandIdentity, palm_id
from palmpay.synth.render import render_hand, render_hand_and_mask, render_no_hand
from palmpay.synth.variation import BACKGROUNDS, TEST_RANGES, Variation, VariationRanges
from palmpay.synth.writers import write_gallery, write_video, write_y4m

__all__ = [
    "BACKGROUNDS",
    "HANDS",
    "HandIdentity",
    "Variation",
    "VariationRanges",
    "TEST_RANGES",
    "render_hand",
    "render_hand_and_mask",
    "render_no_hand",
    "palm_id",
    "presentation_frames",
    "demo_clip",
    "write_video",
    "write_y4m",
    "write_gallery",
    "main",
]
