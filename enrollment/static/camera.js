// The camera: open it, show it, grab JPEG frames, and collect good palm frames by asking the
// server (/v1/capture/analyze) about one frame every ~300 ms.

import { api, ApiError, setText, showScreen, sleep, updateMeter } from "./common.js";
import { isGood, promptFor, PROMPTS } from "./prompts.js";

/** Why the camera could not be opened: denied | not_found | in_use | unknown. */
export class CameraError extends Error {
  constructor(kind, cause) {
    super(kind);
    this.name = "CameraError";
    this.kind = kind;
    this.cause = cause;
  }
}

/** Messages for CameraError kinds. */
export const CAMERA_MESSAGES = Object.freeze({
  denied: {
    title: "Camera access is blocked",
    text: "This kiosk needs the camera to see your palm. Ask staff to allow camera access " +
      "for this page in the browser settings, then tap Try again.",
  },
  not_found: {
    title: "No camera found",
    text: "This kiosk cannot find a camera. Ask staff to connect one, then tap Try again.",
  },
  in_use: {
    title: "The camera is busy",
    text: "Another program is using the camera. Close it, then tap Try again.",
  },
  unknown: {
    title: "The camera did not start",
    text: "Something went wrong while starting the camera. Tap Try again.",
  },
});

const CONSTRAINTS = {
  audio: false,
  video: { width: { ideal: 640 }, height: { ideal: 480 }, facingMode: "user" },
};

/** Open the camera into `video`; resolves to the MediaStream or rejects with CameraError. */
export async function openCamera(video) {
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== "function") {
    // No camera API at all (no device support, or a page not served over https/localhost).
    throw new CameraError("not_found");
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia(CONSTRAINTS);
  } catch (err) {
    const name = err && err.name;
    if (name === "NotAllowedError" || name === "SecurityError" ||
        name === "PermissionDeniedError") {
      throw new CameraError("denied", err);
    }
    if (name === "NotFoundError" || name === "DevicesNotFoundError" ||
        name === "OverconstrainedError") {
      throw new CameraError("not_found", err);
    }
    if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
      throw new CameraError("in_use", err);
    }
    throw new CameraError("unknown", err);
  }
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  try {
    await video.play();
  } catch {
    // Autoplay of a muted stream is allowed; if play() still fails the frames below time out.
  }
  for (let i = 0; i < 100 && !(video.videoWidth > 0); i += 1) await sleep(50);
  if (!(video.videoWidth > 0)) {
    stopCamera(stream, video);
    throw new CameraError("unknown");
  }
  return stream;
}

/**
 * Open the camera into `video`, or show the page's camera-error screen with the reason
 * (blocked, missing, in use). Resolves to the MediaStream, or null after showing the error.
 */
export async function startCamera(video) {
  try {
    return await openCamera(video);
  } catch (err) {
    const kind = err instanceof CameraError ? err.kind : "unknown";
    const msg = CAMERA_MESSAGES[kind] || CAMERA_MESSAGES.unknown;
    setText("camera-error-title", msg.title);
    setText("camera-error-text", msg.text);
    showScreen("camera-error");
    return null;
  }
}

/** Stop every track and detach the preview. */
export function stopCamera(stream, video) {
  if (stream) for (const track of stream.getTracks()) track.stop();
  if (video) video.srcObject = null;
}

/** The current video frame as a JPEG Blob (full camera resolution, not mirrored). */
export function grabJpeg(video, canvas, quality = 0.9) {
  const w = video.videoWidth;
  const h = video.videoHeight;
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("toBlob failed"))),
      "image/jpeg", quality);
  });
}

/**
 * The `onUpdate` of `collectPalm` that every page uses: the prompt in #prompt (left alone until
 * `holdPromptUntil`, a performance.now() time, so a first instruction can be read), the "good
 * frame" outline on #stage, and the progress meter.
 */
export function showPalmProgress({ holdPromptUntil = 0 } = {}) {
  return ({ prompt, count, target, good }) => {
    const shown = document.getElementById("prompt");
    if (performance.now() >= holdPromptUntil && shown.textContent !== prompt) {
      setText("prompt", prompt);
    }
    document.getElementById("stage").classList.toggle("good", good);
    updateMeter(count, target);
  };
}

/**
 * Collect `target` good frames of one hand.
 *
 * options: video, canvas, target, intervalMs, signal (AbortSignal), onUpdate({prompt, count,
 * target, good, result}), excludeHand ("left"|"right": frames of that hand are not counted, e.g.
 * when adding the other hand), sameHand (only count frames of the hand of the first good frame).
 * Resolves to {frames: Blob[], handedness}. Rejects with ApiError when the key is rejected, or
 * AbortError.
 */
export async function collectPalm({
  video, canvas, target, intervalMs = 300, signal, onUpdate = () => {}, excludeHand = null,
  sameHand = true,
}) {
  const frames = [];
  let hand = null;
  let failures = 0;
  while (frames.length < target) {
    if (signal && signal.aborted) throw new DOMException("aborted", "AbortError");
    const started = performance.now();
    let prompt = PROMPTS.show;
    let good = false;
    let result = null;
    try {
      const blob = await grabJpeg(video, canvas);
      const body = new FormData();
      body.append("image", blob, "frame.jpg");
      result = await api("v1/capture/analyze", { method: "POST", body, signal });
      failures = 0;
      prompt = promptFor(result);
      if (isGood(result)) {
        const seen = result.handedness || null;
        if (excludeHand && seen === excludeHand) {
          prompt = PROMPTS.otherHand;
        } else if (sameHand && hand && seen && seen !== hand) {
          prompt = PROMPTS.sameHand;
        } else {
          if (!hand) hand = seen;
          frames.push(blob);
          good = true;
        }
      }
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      if (err instanceof ApiError && err.keyRejected) throw err;
      failures += 1;
      prompt = err instanceof ApiError && err.status === 0
        ? "Connecting to PalmPay…"
        : PROMPTS.show;
      if (failures >= 20) throw err;
    }
    onUpdate({ prompt, count: frames.length, target, good, result });
    const wait = intervalMs - (performance.now() - started);
    if (frames.length < target && wait > 0) await sleep(wait, signal);
  }
  return { frames, handedness: hand };
}
