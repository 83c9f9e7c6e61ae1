// Unenroll: customer id + the last 4 digits of the enrolled card → good palm frames →
// POST /v1/customers/{id}/unenroll (frames + card_last4) → confirmation.
//
// The id alone is no proof (customer ids are on every payment), so the server removes the
// enrollment only when the palm matches that customer and the digits match its card. Any
// mismatch answers one problem, verification_failed, whatever failed; repeated failures lock
// this kiosk out (429 too_many_attempts). The frames and digits stay in memory only until the
// request is sent; nothing is stored or logged.

import { ApiError, api, bootKiosk, setText, showKeyRejected, showScreen, updateMeter } from
  "./common.js";
import { collectPalm, showPalmProgress, startCamera, stopCamera } from "./camera.js";

/** Good frames sent with the proof. */
const FRAMES = 4;

const $ = (id) => document.getElementById(id);
const video = $("video");
const canvas = document.createElement("canvas");

const state = { stream: null, abort: null, request: null };

function stopCapture() {
  if (state.abort) state.abort.abort();
  state.abort = null;
  stopCamera(state.stream, video);
  state.stream = null;
}

function showForm(message = "") {
  stopCapture();
  state.request = null;
  $("unenroll-form").reset();
  setText("unenroll-error", message);
  for (const id of ["customer-id", "card-last4"]) $(id).removeAttribute("aria-invalid");
  showScreen("form");
  $("customer-id").focus();
}

function fail(message, field = "customer-id") {
  setText("unenroll-error", message);
  $(field).setAttribute("aria-invalid", "true");
  $(field).focus();
}

function onSubmit(event) {
  event.preventDefault();
  const id = $("customer-id").value.trim();
  const last4 = $("card-last4").value.trim();
  if (!/^[A-Za-z0-9_-]{3,64}$/.test(id)) {
    fail("Enter the customer ID exactly as shown at enrollment, for example cus_….");
    return;
  }
  if (!/^[0-9]{4}$/.test(last4)) {
    fail("Enter exactly 4 digits: the last 4 of the card you enrolled.", "card-last4");
    return;
  }
  state.request = { id, last4 };
  capture();
}

async function capture() {
  setText("prompt", "Show your palm to the camera");
  updateMeter(0, FRAMES);
  $("stage").classList.remove("good");
  showScreen("camera");
  state.stream = await startCamera(video);
  if (!state.stream) return;
  state.abort = new AbortController();
  let frames;
  try {
    ({ frames } = await collectPalm({
      video,
      canvas,
      target: FRAMES,
      signal: state.abort.signal,
      onUpdate: showPalmProgress(),
    }));
  } catch (err) {
    stopCapture();
    if (err && err.name === "AbortError") return;
    outcomeError(err);
    return;
  }
  stopCapture();
  await submit(frames);
}

async function submit(frames) {
  const request = state.request;
  if (!request) {
    showForm();
    return;
  }
  showScreen("processing");
  const body = new FormData();
  frames.forEach((frame, i) => body.append("frames", frame, `frame-${i + 1}.jpg`));
  body.append("card_last4", request.last4);
  state.request = null; // the digits leave the page only in this one request
  try {
    await api(`v1/customers/${encodeURIComponent(request.id)}/unenroll`, { method: "POST", body });
  } catch (err) {
    outcomeError(err);
    return;
  }
  $("unenroll-form").reset();
  setText("removed-id", request.id);
  showScreen("removed");
}

function outcomeError(err) {
  if (err instanceof ApiError && err.keyRejected) {
    showKeyRejected();
    return;
  }
  let message;
  if (err instanceof ApiError && err.code === "verification_failed") {
    message = "We could not verify this enrollment. Check the customer ID and the card's last " +
      "4 digits, and show the hand you enrolled.";
  } else if (err instanceof ApiError && (err.code === "too_many_attempts" || err.status === 429)) {
    message = "Too many tries at this kiosk. Please ask staff for help, or try again later.";
  } else if (err instanceof ApiError && err.code === "palm_not_found") {
    message = "We couldn't see a palm clearly enough. Please try again.";
  } else if (err instanceof ApiError && err.status === 0) {
    message = "The PalmPay service cannot be reached. Please try again.";
  } else {
    message = `Removal failed: ${(err && err.message) || "please try again"}.`;
  }
  showForm(message);
}

function init() {
  if (!bootKiosk()) return;
  $("unenroll-form").addEventListener("submit", onSubmit);
  for (const id of ["customer-id", "card-last4"]) {
    $(id).addEventListener("input", () => {
      setText("unenroll-error", "");
      $(id).removeAttribute("aria-invalid");
    });
  }
  $("camera-cancel").addEventListener("click", () => showForm());
  $("camera-error-cancel").addEventListener("click", () => showForm());
  $("camera-retry").addEventListener("click", () => (state.request ? capture() : showForm()));
  $("removed-done").addEventListener("click", () => showForm());
  window.addEventListener("pagehide", stopCapture);
  showForm();
}

init();
