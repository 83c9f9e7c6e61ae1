"""Settings, read from ``PALMPAY_*`` environment variables (pydantic-settings).

Every knob of the recognition pipeline lives here so that a deployment can tune it without code
changes; the decision threshold is not a setting but a property of the model (see
``models/*.json``), chosen at a fixed false-accept rate by ``models/calibrate.py``. The models
default to the ones bundled with palmpay (:func:`palmpay.assets.path`); ``PALMPAY_MODEL_DIR``
points elsewhere.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from palmpay import assets

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Runtime settings. Environment variables are ``PALMPAY_<NAME>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="PALMPAY_", extra="ignore")

    model_dir: Path = Field(
        default_factory=lambda: assets.path("models"),
        description="Folder holding the ONNX models (default: the models bundled with palmpay).",
    )
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime execution providers, in order of preference.",
    )
    intra_op_threads: int = Field(1, ge=0, description="onnxruntime threads per session (0=auto).")
    library_threads: int = Field(1, ge=0, description="OpenCV (process-wide) and FAISS OpenMP "
                                 "(per search thread) threads; 0 = all (palmpay/pipeline.py).")

    # Hand models (MediaPipe, converted to ONNX by models/build_hand_models.py).
    palm_detector: str = "palm_detection_full.onnx"
    hand_landmarker: str = "hand_landmark_full.onnx"
    detection_score: float = Field(0.5, description="Palm detector score to accept a hand.")
    presence_score: float = Field(0.5, description="Landmark model hand-presence score.")
    min_palm_pixels: float = Field(
        40.0,
        description="Palm width (index-to-pinky finger base, frame px) below which roi "
        "reports palm_too_small.",
    )

    # Embedding model (models/build_compcode.py) and its calibration.
    embedder: str = "compcode.onnx"
    shortlist_k: int = Field(50, ge=1, description="FAISS shortlist size before the code re-rank.")
    # Palm index (palmpay/index/; the structure choice: docs/index_choice.md).
    index_factory: str = Field(
        "PCAR192,PQ64x4fs,Refine(PCAR192,SQ8)",
        description="FAISS factory string of the palm index (Flat, IVF1024,Flat, HNSW32, "
        "…); the default is chosen by measurement (docs/index_choice.md). One that needs "
        "training searches exactly until index_train_size samples, then trains on them.",
    )
    index_nprobe: int = Field(32, ge=1, description="IVF structures: inverted lists searched "
                              "per query (more: slower, better recall).")
    index_ef_search: int = Field(128, ge=1, description="HNSW structures: search queue size "
                                 "(more: slower, better recall).")
    index_k_factor: int = Field(
        16, ge=1, description="Structures with a refine step (…,Refine(…)): candidates the "
        "compressed index returns per shortlisted sample, re-scored on the refine vectors.",
    )
    index_train_size: int = Field(
        50_000, ge=0, description="Enrolled samples at which an untrained structure trains "
        "itself on them, inside that enrollment (a one-off pause: seconds to minutes); 0 = "
        "only on an explicit PalmIndex.train().",
    )
    index_compact_share: float = Field(
        0.25, gt=0, le=1, description="Share of removed samples (tombstones) in the index "
        "above which they are dropped from it (a compaction).",
    )

    # Open-set operating point (palmpay/decision.py). Lower values are stricter.
    target_fpir: float = Field(
        1e-4,
        gt=0,
        lt=1,
        description="Target false-positive identification rate per presentation: at most this "
        "share of strangers is charged to anyone. The threshold rises with the gallery to "
        "keep it.",
    )
    max_fnir: float = Field(
        0.02,
        gt=0,
        lt=1,
        description="Largest acceptable share of enrolled shoppers not recognised; sets "
        "N_safe, the largest gallery searched on the palm alone.",
    )
    n_safe: int | None = Field(
        None,
        ge=0,
        description="Override N_safe (enrolled samples). None: computed from the tail model, "
        "target_fpir and max_fnir. 0: every payment needs the phone digits.",
    )
    narrowing_max_failures: int = Field(
        5, ge=1, description="Wrong phone digits (palm not recognised) one terminal may send in "
        "a row before it is locked out."
    )
    narrowing_lockout_s: float = Field(
        300.0, gt=0, description="How long a terminal is locked out after too many wrong tries."
    )

    # Abuse controls (palmpay/api/ratelimit.py, palmpay/api/narrowing.py). Counters live in the
    # database, so every API process shares them. Rates are `limits` strings: "60/minute",
    # "10/second", "1000/hour" (a fixed window that starts at the first hit).
    rate_limit_requests: str = Field(
        "600/minute", description="Requests one API key may make (any route; the kiosk's "
        "capture helper polls ~3 frames a second while a palm is shown)."
    )
    rate_limit_payments: str = Field(
        "60/minute", description="POST /v1/payments one terminal key may make."
    )
    rate_limit_customers: str = Field(
        "60/minute", description="Customer enrollments, reads, unenrollments and deletions one "
        "API key may make."
    )
    unrecognised_max_failures: int = Field(
        10, ge=1, description="Unrecognised presentations (palm not recognised, narrowed or "
        "not) one terminal may send in a row before it is locked out."
    )
    unrecognised_lockout_s: float = Field(
        300.0, gt=0, description="How long a terminal is locked out after too many "
        "unrecognised presentations."
    )
    unenroll_max_failures: int = Field(
        5, ge=1, description="Failed unenroll proofs (palm or card digits not matching) one "
        "kiosk key may send in a row before it is locked out."
    )
    unenroll_lockout_s: float = Field(
        900.0, gt=0, description="How long a kiosk is locked out of unenrolling after too many "
        "failed proofs."
    )
    bad_key_max_failures: int = Field(
        10, ge=1, description="Unknown or revoked API keys one client address may send (within "
        "bad_key_window_s) before its requests answer 429 for a while."
    )
    bad_key_backoff_s: float = Field(
        2.0, gt=0, description="First back-off after bad_key_max_failures unknown keys; doubles "
        "every further time (up to bad_key_backoff_max_s)."
    )
    bad_key_backoff_max_s: float = Field(
        900.0, gt=0, description="Longest back-off of one client address for unknown keys."
    )
    bad_key_window_s: float = Field(
        600.0, gt=0, description="Window in which unknown keys from one address are counted."
    )

    @field_validator("rate_limit_requests", "rate_limit_payments", "rate_limit_customers")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate like '60/minute': {value!r}") from exc
        return value

    # Per-frame quality gates (capture). Higher min values are stricter.
    min_sharpness: float = Field(
        10.0,
        description="Minimum variance of the Laplacian of the palm region resampled to 128 px "
        "(blur gate). On coep-dev photos genuine scores hold down to ~8 (Gaussian sigma 3); "
        "motion-smeared frames score 3-5.",
    )
    min_brightness: float = Field(40.0, description="Minimum mean grey level of the palm (0-255).")
    max_brightness: float = Field(220.0, description="Maximum mean grey level of the palm (0-255).")
    min_palm_fraction: float = Field(
        0.12, description="Minimum palm width as a fraction of the frame's shorter side."
    )

    # Presentation fusion (replay and checkout).
    presentation_frames: int = Field(
        3, ge=1, description="Good frames fused into one presentation decision."
    )
    presentation_gap: int = Field(
        5, ge=1, description="Frames without a good palm that end a presentation."
    )
    checkout_reduced_decode: bool = Field(True, description="Decode later JPEG checkout frames "
                                          "reduced when the palm allows (palmpay/api/palms.py).")
    liveness: str = Field(
        "report",
        pattern="^(off|report|enforce)$",
        description="Presentation-attack check of POST /v1/payments (palmpay/liveness.py) on "
        "the good frames, when there are at least 2: off; report (log it and return it in the "
        "`PalmPay-Liveness` response header); enforce (an attack answers 422 "
        "presentation_attack). Default report: its bona fide false rejects on coep-dev's real "
        "stills are not ~0 (docs/security/liveness.md).",
    )
    liveness_require_articulation: bool = Field(
        False,
        description="Count a presentation whose landmarks moved only as a plane would (no "
        "finger articulation: a flat print moved rigidly, or a real hand held very still) as "
        "an attack rather than unsure. Catches rigid prints; refuses most still-held hands.",
    )

    # Storage (palmpay/db.py). Relative paths are relative to the working directory.
    data_dir: Path = Field(
        Path("data"),
        description="Folder for local state: the default SQLite database and, in dev mode, "
        "the auto-created keyring.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. None: sqlite:///<data_dir>/palmpay.db. PostgreSQL: "
        "postgresql+psycopg://user@host/db (a plain postgresql:// URL is mapped to psycopg 3).",
    )

    # Card vault keys (palmpay/payments/keys.py). There is deliberately no default secret.
    keyring_file: Path | None = Field(
        None,
        description="JSON keyring file (KEKs + fingerprint key), mode 0600. The only form "
        "`palmpay keys rotate` can rotate.",
    )
    keyring: SecretStr | None = Field(
        None, description="The keyring JSON itself (e.g. from a secret manager)."
    )
    dev_mode: bool = Field(
        False,
        description="DEVELOPMENT ONLY: with no keyring configured, create "
        "<data_dir>/keyring.json (0600) on first use instead of refusing to start.",
    )
    vault_rewrap_batch: int = Field(
        500, ge=1, description="Records re-wrapped per transaction by key rotation."
    )

    # Biometric retention (palmpay/payments/retention.py).
    retention_months: int = Field(
        36, ge=1, le=1200,
        description="Palm templates of a customer inactive for this many months (no successful "
        "payment and no enrollment since) are deleted by `palmpay retention apply`; the customer "
        "can then no longer pay by palm until enrolled again.",
    )
    retention_on_start: bool = Field(
        False, description="Also apply the retention policy when the API starts (before the "
        "palm index is built)."
    )

    # Payments (palmpay/payments/).
    max_payment_amount: int = Field(
        99_999_999,
        ge=1,
        description="Largest amount one payment may authorise, in minor units (any currency); "
        "above it authorize raises amount_too_large.",
    )
    sim_card_limit: int = Field(
        100_000,
        ge=0,
        description="SimulatedAcquirer: per-card limit in minor units (0 = none). Compared "
        "with the card's outstanding total (held + captured - refunded) plus the new "
        "authorisation; above it the acquirer declines insufficient_funds.",
    )
    sim_acquirer_journal: Path | None = Field(
        None,
        description="SimulatedAcquirer: an SQLite file holding its authorisations, so that they "
        "survive a restart and start-up reconciliation can look them up by payment id (as a "
        "real acquirer would). None: in memory only (a new process starts empty).",
    )
    instance_lease_s: float = Field(
        30.0,
        gt=0,
        description="Crash recovery: every API process renews a lease this long (heartbeat "
        "every third of it). An Idempotency-Key claim or authorisation intent whose owner's "
        "lease has expired (or whose owner process is gone on this host) is recovered: the "
        "committed result is answered, or the request runs again.",
    )
    fault_point: str | None = Field(
        None,
        description="Testing only: the name of a commit point (palmpay.payments.faults.POINTS) "
        "where the process kills itself (os._exit(137)), to test crash recovery. Never set "
        "in production.",
    )

    # HTTP API (palmpay/api/).
    enroll_min_samples: int = Field(
        3, ge=1, description="Good palm images (ROI found, quality gates passed) enrollment needs."
    )
    max_upload_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API reads; larger ones get 413 before being read.",
    )
    max_image_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest single uploaded image (multipart part)."
    )
    max_images: int = Field(
        10, ge=1, description="Most images (enrollment photos or checkout frames) per request."
    )
    max_image_pixels: int = Field(
        3840 * 2160,
        ge=256,
        description="Largest image (width x height, read from its header before decoding) "
        "accepted; a progressive or multi-scan JPEG counts twice (palmpay/api/decode.py). "
        "Default: one 4K UHD frame (about 25 MB decoded).",
    )
    max_request_pixels: int = Field(
        3840 * 2160,
        ge=256,
        description="Most pixels all the images of one request may hold together (counted "
        "like max_image_pixels, checked before any is decoded): bounds what one request keeps "
        "in memory (3 bytes a pixel). Default: one 4K frame, or 27 frames of 640x480.",
    )
    decode_workers: int = Field(
        2,
        ge=1,
        description="Requests that may hold decoded images at the same time in one server "
        "process; others wait for a slot. Peak image memory is about decode_workers x "
        "6 bytes x max_request_pixels.",
    )
    decode_wait_s: float = Field(
        30.0,
        gt=0,
        description="How long a request waits for a decode slot before 503 server_busy.",
    )
    idempotency_ttl_hours: float = Field(
        24.0, gt=0, description="How long an Idempotency-Key and its stored response are kept."
    )
    idempotency_wait_s: float = Field(
        30.0,
        gt=0,
        description="How long a request waits for a concurrent request with the same "
        "Idempotency-Key to finish before answering 409 idempotency_conflict.",
    )
    webhook_backoff_s: float = Field(
        2.0, gt=0, description="First webhook retry delay; doubles on every further attempt."
    )
    webhook_max_attempts: int = Field(
        8, ge=1, description="Delivery attempts per webhook event and endpoint before 'failed'."
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="HTTP timeout of one delivery.")
    webhook_poll_s: float = Field(
        1.0, gt=0, description="How often the webhook dispatcher looks for due deliveries."
    )
    webhook_allow_private: bool = Field(
        False,
        description="DEVELOPMENT ONLY: let webhook endpoints point at loopback, private, "
        "link-local and other non-public addresses. Off, such a URL is refused at registration "
        "(422 webhook_url_refused) and every delivery re-resolves the host and is refused if "
        "any address it resolves to is not public (DNS rebinding).",
    )

    # Operations: GET /metrics (palmpay/api/telemetry.py, docs/operations.md).
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token a Prometheus scrape of GET /metrics must send "
        "(Authorization: Bearer <token>), from any address. None: /metrics answers loopback "
        "clients only (a Prometheus or agent on the same host), unless metrics_public.",
    )
    metrics_public: bool = Field(
        False, description="Serve GET /metrics to any client without a token (a private "
        "network where only the scraper reaches the API port). It shows no customer, card or "
        "key, but does show traffic, refusal rates and the gallery size of every merchant.",
    )
    metrics_refresh_s: float = Field(
        5.0, gt=0, description="With several worker processes (PROMETHEUS_MULTIPROC_DIR set): "
        "how often each worker publishes its index size, threshold and replica position for "
        "the scrape, which any one worker answers.",
    )

    # Index replicas (palmpay/api/replica.py).
    replica_poll_s: float = Field(
        2.0, gt=0, description="How often every API process also polls the palm change log "
        "for changes made by other processes, beside PostgreSQL LISTEN/NOTIFY (on SQLite the "
        "only way): how stale an index replica can get when a notification is lost.",
    )
    replica_reconnect_s: float = Field(
        1.0, gt=0, description="Wait before the replica's PostgreSQL listener reconnects after "
        "its connection dropped (a catch-up query runs on every reconnect).",
    )
    replica_lock_timeout_s: float = Field(
        30.0, gt=0, description="How long an enrollment waits for the cross-process enrollment "
        "lock (a PostgreSQL advisory lock) before 503 server_busy.",
    )

    def resolved_database_url(self) -> str:
        """:attr:`database_url`, or the default SQLite file under :attr:`data_dir`."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'palmpay.db').resolve()}"

    def model_path(self, name: str) -> Path:
        """Absolute path of a model file in :attr:`model_dir`; raises if it is missing."""
        path = Path(name) if Path(name).is_absolute() else self.model_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"model file {path} not found (PALMPAY_MODEL_DIR={self.model_dir})"
            )
        return path


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
