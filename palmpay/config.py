"""Settings, read from ``PALMPAY_*`` environment variables (pydantic-settings).

Every knob of the recognition pipeline lives here so that a deployment can tune it without code
changes; the decision threshold is not a setting but a property of the model (see
``models/*.json``), chosen at a fixed false-accept rate by ``models/calibrate.py``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings", "REPO_MODELS_DIR"]

REPO_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


class Settings(BaseSettings):
    """Runtime settings. Environment variables are ``PALMPAY_<NAME>`` (case-insensitive)."""

    model_config = SettingsConfigDict(env_prefix="PALMPAY_", extra="ignore")

    model_dir: Path = Field(REPO_MODELS_DIR, description="Folder holding the ONNX models.")
    providers: list[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime execution providers, in order of preference.",
    )
    intra_op_threads: int = Field(1, ge=0, description="onnxruntime threads per session (0=auto).")

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
