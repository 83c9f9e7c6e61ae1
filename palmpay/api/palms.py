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
  the model's calibrated threshold.

Analysis (ONNX sessions) runs without the lock; only index reads and writes take it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from palmpay import embed
from palmpay.api.images import UploadedImage
from palmpay.capture import Quality
from palmpay.config import Settings
from palmpay.index import UnknownIdentityError
from palmpay.payments.errors import PaymentError
from palmpay.recognizer import Recognizer
from palmpay.roi import RoiResult

__all__ = ["Analysis", "PalmDirectory", "Template"]

log = logging.getLogger(__name__)

#: One palm sample: (vector float32 (D,), code uint8 (B,)).
Template = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class Analysis:
    """One analysed image: its ROI result and quality, and whether it is usable."""

    image: UploadedImage
    roi: RoiResult
    quality: Quality | None

    @property
    def good(self) -> bool:
        return self.roi.ok and self.quality is not None and self.quality.ok

    @property
    def status(self) -> str:
        if not self.roi.ok:
            return self.roi.status.value
        return "ok" if self.good else "low_quality"

    @property
    def reason(self) -> str:
        if not self.roi.ok:
            return self.roi.reason
        if self.quality is not None and not self.quality.ok:
            return "quality: " + ", ".join(self.quality.problems)
        return "ok"

    def as_dict(self) -> dict[str, str]:
        return {"image": self.image.part, "filename": self.image.filename,
                "status": self.status, "reason": self.reason}


class PalmDirectory:
    """Enrolled palms of active customers (identity = customer id)."""

    def __init__(self, recognizer: Recognizer, settings: Settings | None = None) -> None:
        self.recognizer = recognizer
        self.settings = settings or recognizer.settings
        self._lock = threading.RLock()
        self._enroll_lock = threading.Lock()

    @property
    def threshold(self) -> float:
        return self.recognizer.threshold

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
    def load(self, records: Iterable[tuple[str, embed.Template]]) -> int:
        """Rebuild the index from ``(customer_id, Template)`` pairs
        (``PaymentService.templates()``); returns the number of customers."""
        by_customer: dict[str, list[Template]] = {}
        for customer_id, template in records:
            by_customer.setdefault(customer_id, []).append((template.vector, template.code))
        with self._lock:
            for who in list(self.recognizer.index.identities):
                self.recognizer.index.remove(who)
            for who, templates in by_customer.items():
                vectors, codes = (np.stack(a) for a in zip(*templates, strict=True))
                self.recognizer.index.add(who, vectors, codes)
        log.info("palm index rebuilt: %d customers", len(by_customer))
        return len(by_customer)

    def add(self, customer_id: str, vectors: np.ndarray, codes: np.ndarray) -> None:
        with self._lock:
            self.recognizer.index.add(customer_id, vectors, codes)

    def remove(self, customer_id: str) -> int:
        """Forget a customer's palms; returns the samples removed (0 if none were indexed)."""
        with self._lock:
            try:
                return self.recognizer.index.remove(customer_id)
            except UnknownIdentityError:
                return 0

    @contextmanager
    def enrollment(self) -> Iterator[None]:
        """Serialises enrollments: duplicate check, database insert and index add run as one."""
        with self._enroll_lock:
            yield

    # -- analysis ------------------------------------------------------------------------------
    def analyze(self, image: UploadedImage) -> Analysis:
        roi, quality = self.recognizer.analyze(image.image, track=False)
        return Analysis(image, roi, quality)

    def _embed(self, analyses: Sequence[Analysis]) -> list[Template]:
        if not analyses:
            return []
        vectors, codes = self.recognizer.embedder.embed_many([a.roi.roi for a in analyses])
        return list(zip(vectors, codes, strict=True))

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
        return self._embed(good)

    def probe(self, frames: Sequence[UploadedImage]) -> list[Template]:
        """Templates of the first ``presentation_frames`` good checkout frames."""
        analyses, good = [], []
        for frame in frames:
            analysis = self.analyze(frame)
            analyses.append(analysis)
            if analysis.good:
                good.append(analysis)
                if len(good) >= self.settings.presentation_frames:
                    break
        if not good:
            raise self._no_palm(analyses, 1, "frames")
        return self._embed(good)

    # -- matching ------------------------------------------------------------------------------
    def match(self, templates: Sequence[Template]) -> tuple[str | None, float]:
        """Fused best customer and score; the customer is None below the threshold."""
        with self._lock:
            best, score = self.recognizer.identify(list(templates))
        if best is None or score < self.threshold:
            return None, score
        return best, score

    def identify(self, frames: Sequence[UploadedImage]) -> tuple[str | None, float]:
        """Checkout frames → (customer id or None, fused score)."""
        return self.match(self.probe(frames))
