"""The API's palm directory: one :class:`~palmpay.recognizer.Recognizer` and its FAISS index
behind a lock.

The database is the source of truth for templates: at start the index is rebuilt from
``PaymentService.templates()`` (:meth:`PalmDirectory.load`), and routes change the index only
after the database transaction that enrolls or deletes a customer has committed.

- :meth:`PalmDirectory.enroll` analyses enrollment photos as stills (no tracking) and returns
  the templates of the good ones, or raises ``palm_not_found`` (422) listing every file's reason
  when fewer than ``Settings.enroll_min_samples`` are usable.
- :meth:`PalmDirectory.identify` is a checkout: the first ``presentation_frames`` good frames are
  fused by :meth:`Recognizer.identify` and the best customer is returned when its score reaches
  the open-set threshold for the number of samples searched (:func:`palmpay.decision.decide`,
  :class:`palmpay.decision.OperatingPoint`): the whole gallery, or with ``within`` only the
  customers who gave the same phone digits. :meth:`PalmDirectory.needs_narrowing` says when the
  whole gallery is past N_safe.

Every image goes through the recognizer's :class:`~palmpay.pipeline.Pipeline`, as in the live
path. Templates are :class:`palmpay.embed.Template`. With a cancelable ``transform``
(:mod:`palmpay.payments.cancelable`, the payment service's), the index holds only transformed
templates: :meth:`PalmDirectory.add` protects clear ones, :meth:`PalmDirectory.load` takes them
already protected (``PaymentService.templates()``), probes are transformed before the search,
and the index's code mask keeps every score what it is in clear. Analysis (ONNX sessions) runs
without the lock; only index reads and writes take it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np

from palmpay import decision
from palmpay.api import telemetry
from palmpay.api.images import UploadedImage
from palmpay.config import Settings
from palmpay.cputime import stage
from palmpay.embed import Template
from palmpay.index import PalmIndex, UnknownIdentityError
from palmpay.liveness import Liveness, assess_liveness
from palmpay.payments.cancelable import IDENTITY, TemplateTransform
from palmpay.payments.errors import PaymentError
from palmpay.pipeline import Analysis as FrameAnalysis
from palmpay.pipeline import limit_search_threads
from palmpay.recognizer import Recognizer
from palmpay.roi import ROI_SIZE, Hand, HandTrack, scale_hand

__all__ = ["MIN_PALM_PX_PER_ROI_PX", "REDUCE_MARGIN", "Analysis", "PalmDirectory",
           "reduction_for"]

log = logging.getLogger(__name__)

#: A checkout frame is decoded at reduced scale only if its palm keeps at least this many frame
#: pixels per ROI pixel (the ROI is 128 px across one palm width)...
MIN_PALM_PX_PER_ROI_PX = 1.5
#: ...with this margin for the hand moving closer or away between frames.
REDUCE_MARGIN = 1.25


def reduction_for(palm_width: float) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) that keeps a palm ``palm_width`` full
    frame pixels wide at :data:`MIN_PALM_PX_PER_ROI_PX` x :data:`REDUCE_MARGIN` per ROI pixel
    (240 px: a 640x480 kiosk frame's palm, 120-240 px, is never reduced)."""
    need = ROI_SIZE * MIN_PALM_PX_PER_ROI_PX * REDUCE_MARGIN
    return next((k for k in (8, 4, 2) if palm_width / k >= need), 1)


@dataclass(frozen=True, eq=False)
class Analysis:
    """One analysed uploaded image: the pipeline's :class:`~palmpay.pipeline.Analysis` of it,
    made on the image decoded at 1/``scale`` of each side (its hand in those pixels)."""

    image: UploadedImage
    frame: FrameAnalysis
    scale: int = 1

    @property
    def pixels(self) -> np.ndarray:
        """The pixels that were analysed."""
        return self.image.reduced(self.scale)

    @property
    def good(self) -> bool:
        return self.frame.good

    def as_dict(self) -> dict[str, str]:
        return {"image": self.image.part, "filename": self.image.filename,
                "status": self.frame.status, "reason": self.frame.reason}


class PalmDirectory:
    """Enrolled palms of active customers (identity = customer id)."""

    def __init__(self, recognizer: Recognizer, settings: Settings | None = None,
                 transform: TemplateTransform = IDENTITY) -> None:
        self.recognizer = recognizer
        self.settings = settings or recognizer.settings
        self.transform = transform
        if transform.enabled:
            old = recognizer.index
            recognizer.index = PalmIndex(old.dim, old.code_bytes, old.factory, old.max_shift,
                                         code_mask=transform.code_mask(old.code_bytes),
                                         **old.options)
        self._lock = threading.RLock()
        self._enroll_lock = threading.Lock()

    @property
    def threshold(self) -> float:
        """Threshold of a search over the whole gallery."""
        with self._lock:
            return self.recognizer.threshold

    def needs_narrowing(self, within: Sequence[str] | None = None) -> bool:
        """Whether the gallery (or the part of it ``within``: one merchant's customers) is past
        N_safe: a payment then needs the phone digits."""
        with self._lock:
            recognizer = self.recognizer
            samples = len(recognizer.index) if within is None else recognizer.samples_of(within)
            return recognizer.operating_point.needs_narrowing(samples)

    def operating_point(self, within: Sequence[str] | None = None
                        ) -> dict[str, float | int | bool]:
        """The operating point of the whole gallery, or of the part ``within`` (one merchant's
        customers: what its terminals search) (``GET /v1/status``)."""
        with self._lock:
            recognizer = self.recognizer
            samples = len(recognizer.index) if within is None else recognizer.samples_of(within)
            return recognizer.operating_point.describe(samples)

    @property
    def customers(self) -> int:
        """Number of enrolled customers."""
        with self._lock:
            return len(self.recognizer.index.identities)

    @property
    def samples(self) -> int:
        with self._lock:
            return len(self.recognizer.index)

    # -- index maintenance -------------------------------------------------------------------
    def load(self, records: Iterable[tuple[str, Template]]) -> int:
        """Rebuild the index from ``(customer_id, template)`` pairs, templates already under
        :attr:`transform` (``PaymentService.templates()``); returns the number of customers."""
        by_customer: dict[str, list[Template]] = {}
        for customer_id, template in records:
            by_customer.setdefault(customer_id, []).append(template)
        with self._lock:
            for who in list(self.recognizer.index.identities):
                self.recognizer.index.remove(who)
            for who, templates in by_customer.items():
                self.recognizer.add(who, templates, quiet=True)
        log.info("palm index rebuilt: %d customers", len(by_customer))
        self.recognizer.log_operating_point()
        return len(by_customer)

    def add(self, customer_id: str, templates: Sequence[Template]) -> None:
        """Index clear templates (protected by :attr:`transform` first)."""
        protected = [self.transform.protect(t) for t in templates]
        with self._lock:
            self.recognizer.add(customer_id, protected)

    def add_protected(self, customer_id: str, templates: Sequence[Template]) -> None:
        """Index templates already under :attr:`transform` (``PaymentService.templates()``:
        an index replica applying a change, :mod:`palmpay.api.replica`)."""
        with self._lock:
            self.recognizer.add(customer_id, list(templates))

    def indexed(self, customer_id: str) -> int:
        """Samples of ``customer_id`` in the index (0 when it is not enrolled)."""
        with self._lock:
            return self.recognizer.samples_of([customer_id])

    def remove(self, customer_id: str) -> int:
        """Forget a customer's palms; returns the samples removed (0 if none were indexed)."""
        with self._lock:
            try:
                return self.recognizer.remove(customer_id)
            except UnknownIdentityError:
                return 0

    @contextmanager
    def enrollment(self) -> Iterator[None]:
        """Serialises enrollments: duplicate check, database insert and index add run as one."""
        with self._enroll_lock:
            yield

    # -- analysis ------------------------------------------------------------------------------
    def analyze(self, image: UploadedImage, track: HandTrack | None = None,
                scale: int = 1) -> Analysis:
        """One uploaded image through the pipeline: a still (the detector runs), or with
        ``track`` the next frame of that presentation; ``scale`` > 1 decodes it reduced."""
        return telemetry.frame(Analysis(image, self.recognizer.pipeline.analyze(  # counted
            image.reduced(scale), track=track or False), scale))

    def _templates(self, good: Sequence[Analysis]) -> list[Template]:
        return self.recognizer.pipeline.templates([a.frame for a in good])

    def _no_palm(self, analyses: Sequence[Analysis], needed: int, what: str) -> PaymentError:
        usable = sum(a.good for a in analyses)
        return PaymentError(
            "palm_not_found",
            f"{usable} of {len(analyses)} {what} show a usable palm; {needed} needed",
            extra={"required": needed, "usable": usable,
                   "images": [a.as_dict() for a in analyses]},
        )

    def enroll(self, images: Sequence[UploadedImage]) -> list[Template]:
        """Templates of the good enrollment images (each analysed as a still)."""
        analyses = [self.analyze(image) for image in images]
        good = [a for a in analyses if a.good]
        needed = self.settings.enroll_min_samples
        if len(good) < needed:
            raise self._no_palm(analyses, needed, "images")
        return self._templates(good)

    def probe(self, frames: Sequence[UploadedImage]) -> list[Template]:
        """Templates of the first ``presentation_frames`` good checkout frames."""
        return self.probe_live(frames, liveness=False)[0]

    def probe_live(self, frames: Sequence[UploadedImage], liveness: bool = True
                   ) -> tuple[list[Template], Liveness | None]:
        """:meth:`probe`; with ``liveness`` every frame is analysed and the good ones (at
        least 2, else None) go through :func:`palmpay.liveness.assess_liveness`.

        The frames are one presentation: the hand is tracked across them (a
        :class:`~palmpay.roi.HandTrack` of this call's own, so concurrent requests share no
        state), so the palm detector runs on the first frame and again only when tracking is
        lost; the others get their landmarks from the previous frame's.

        Frames are decoded when analysed: without liveness the ones after the
        ``presentation_frames``-th good frame never are. Once a frame's palm is found, later
        JPEG frames are decoded at the reduction :func:`reduction_for` its width allows
        (``Settings.checkout_reduced_decode``); liveness then compares every good frame at the
        smallest scale used."""
        analyses: list[Analysis] = []
        good: list[Analysis] = []
        track = HandTrack()
        scale = at = 1  # the scale chosen for later frames; the scale the track is in
        for frame in frames:
            use = scale if scale > 1 and frame.can_reduce(scale) else 1
            if use != at:
                track.rescale(at / use)
                at = use
            analysis = self.analyze(frame, track, use)
            analyses.append(analysis)
            roi = analysis.frame.roi
            if scale == 1 and roi.ok and self.settings.checkout_reduced_decode:
                scale = reduction_for(roi.palm_width * use)
            if analysis.good:
                good.append(analysis)
                if not liveness and len(good) >= self.settings.presentation_frames:
                    break
        if not good:
            raise self._no_palm(analyses, 1, "frames")
        live = None
        if liveness and len(good) >= 2:
            with stage("liveness"):
                images, hands = _at_one_scale(good)
                live = assess_liveness(images, hands,
                                       self.settings.liveness_require_articulation)
        return self._templates(good[:self.settings.presentation_frames]), live

    # -- matching ------------------------------------------------------------------------------
    def match(self, templates: Sequence[Template], within: Sequence[str] | None = None
              ) -> tuple[str | None, float]:
        """Fused best customer and score; the customer is None below the threshold of the
        search (the whole gallery, or only the customers ``within``)."""
        with stage("search"):
            limit_search_threads(self.settings.library_threads)
            probes = [self.transform.probe(t) for t in templates]
            with self._lock:
                recognizer = self.recognizer
                best, score = recognizer.identify(probes, within)
                samples = (len(recognizer.index) if within is None
                           else recognizer.samples_of(within))
                threshold = recognizer.operating_point.threshold(samples)
        verdict = decision.decide(best, score, threshold)
        return verdict.identity, score

    def identify(self, frames: Sequence[UploadedImage], within: Sequence[str] | None = None
                 ) -> tuple[str | None, float]:
        """Checkout frames → (customer id or None, fused score)."""
        return self.match(self.probe(frames), within)


def _at_one_scale(analyses: Sequence[Analysis]) -> tuple[list[np.ndarray], list[Hand | None]]:
    """The analysed frames and their hands, those decoded larger than the smallest scale used
    resized to it (area-averaged, as the reduced decode averages)."""
    scale = max(a.scale for a in analyses)
    images: list[np.ndarray] = []
    hands: list[Hand | None] = []
    for a in analyses:
        image, hand = a.pixels, a.frame.roi.hand
        if a.scale != scale:
            factor = a.scale / scale
            size = (-(-a.image.header.width // scale), -(-a.image.header.height // scale))
            if image.shape[1] != size[0]:  # EXIF-rotated: sides swapped
                size = size[::-1]
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            hand = None if hand is None else scale_hand(hand, factor)
        images.append(image)
        hands.append(hand)
    return images, hands
