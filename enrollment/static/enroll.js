// Enrollment: consent → palm frames → card and phone digits → POST /v1/customers → customer id.
// Consent comes first (GDPR Art. 9, BIPA): until the shopper has ticked the box and continued,
// the camera is never requested (no getUserMedia) and no frame is sent to /v1/capture/analyze.
// Frames live in memory only; the card number and the last 4 digits of the phone are read from
// their fields when submitting and the fields are cleared right after. Nothing here is written
// to any storage or logged.
//
// One Idempotency-Key per enrollment, not per try: a request whose outcome is unknown (no
// answer, a 5xx, the key still busy) is resent as it was, with the same key — automatically on a
// network error, and on the next "Enroll" — so an enrollment that did go through is answered
// instead of failing as a duplicate card. A definitive answer ends the attempt.

import {
  ApiError, api, bootKiosk, setText, showKeyRejected, showScreen, sleep, updateMeter,
} from "./common.js";
import { collectPalm, showPalmProgress, startCamera, stopCamera } from "./camera.js";
import {
  brandName, cardDigits, cardNumberProblem, parseExpiry, phoneLast4Problem,
} from "./money.js";

/** Good frames needed per hand. */
const FRAMES_PER_HAND = 5;
/** The done screen (name, last4, id) clears itself after this long. */
const DONE_RESET_MS = 120000;
/** Resends of one enrollment request (same Idempotency-Key) when the connection fails. */
const NETWORK_RETRIES = 2;

const $ = (id) => document.getElementById(id);
const video = $("video");
const canvas = document.createElement("canvas");

const state = {
  hands: [], // [{handedness, frames: Blob[]}]
  stream: null,
  abort: null,
  adding: false, // capturing the second hand
  consented: false, // the consent screen was accepted: only then may the camera start
  doneTimer: null,
  attempt: null, // {key, body}: an enrollment request whose outcome is unknown
};

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** No answer, a server error, or the key still busy: the enrollment may have gone through. */
function outcomeUnknown(err) {
  return err instanceof ApiError && (err.status === 0 || err.status >= 500 ||
    (err.status === 409 && err.code === "idempotency_conflict"));
}

/** POST the enrollment; resends the pending request (same body, same key) if there is one. */
async function postEnrollment(body) {
  if (!state.attempt) state.attempt = { key: newIdempotencyKey(), body };
  const { key } = state.attempt;
  for (let attempt = 0; ; attempt += 1) {
    try {
      const customer = await api("v1/customers", {
        method: "POST", body: state.attempt.body, headers: { "Idempotency-Key": key },
      });
      state.attempt = null;
      return customer;
    } catch (err) {
      if (err instanceof ApiError && err.status === 0 && attempt < NETWORK_RETRIES) {
        await sleep(1000 * (attempt + 1));
        continue;
      }
      if (!outcomeUnknown(err)) state.attempt = null;
      throw err;
    }
  }
}

function resetAll() {
  stopCapture();
  state.hands = [];
  state.adding = false;
  state.consented = false;
  state.attempt = null;
  clearTimeout(state.doneTimer);
  $("consent-form").reset();
  clearCardForm();
  setText("done-card", "");
  setText("done-id", "");
  showScreen("start");
}

function clearCardForm() {
  $("card-form").reset();
  for (const id of ["card-number-error", "card-expiry-error", "phone-last4-error", "card-error"]) {
    setText(id, "");
  }
  for (const id of ["card-number", "card-expiry", "phone-last4", "customer-name"]) {
    $(id).removeAttribute("aria-invalid");
  }
}

function stopCapture() {
  if (state.abort) state.abort.abort();
  state.abort = null;
  stopCamera(state.stream, video);
  state.stream = null;
}

function handWord(handedness) {
  return handedness === "left" ? "left" : handedness === "right" ? "right" : "";
}

async function capture(firstPrompt = null) {
  if (!state.consented) { // never reached: every path to here passes the consent screen
    showScreen("consent");
    return;
  }
  const excludeHand = state.adding && state.hands.length ? state.hands[0].handedness : null;
  setText("camera-title", excludeHand ? "Show your other palm" : "Show your palm");
  setText("prompt", firstPrompt ||
    (excludeHand ? "Now show your other hand" : "Show your palm to the camera"));
  updateMeter(0, FRAMES_PER_HAND);
  $("stage").classList.remove("good");
  showScreen("camera");
  state.stream = await startCamera(video);
  if (!state.stream) return;
  state.abort = new AbortController();
  const keepFirstPromptUntil = firstPrompt ? performance.now() + 2500 : 0;
  let result;
  try {
    result = await collectPalm({
      video,
      canvas,
      target: FRAMES_PER_HAND,
      excludeHand,
      signal: state.abort.signal,
      onUpdate: showPalmProgress({ holdPromptUntil: keepFirstPromptUntil }),
    });
  } catch (err) {
    stopCapture();
    if (err && err.name === "AbortError") return;
    if (err instanceof ApiError && err.keyRejected) {
      showKeyRejected();
      return;
    }
    setText("camera-error-title", "Something went wrong");
    setText("camera-error-text", (err && err.message) || "Please try again.");
    showScreen("camera-error");
    return;
  }
  stopCapture();
  state.hands.push({ handedness: result.handedness, frames: result.frames });
  if (state.hands.length === 1) {
    const which = handWord(result.handedness);
    setText("other-hand-title", which ? `Your ${which} palm is captured` : "Palm captured");
    showScreen("other-hand");
  } else {
    showCardForm();
  }
}

function showCardForm() {
  showScreen("card");
  $("customer-name").focus();
}

function onConsent(event) {
  event.preventDefault();
  if (!$("consent-box").checked) {
    setText("consent-error", "Please tick the box to agree, or cancel.");
    $("consent-box").focus();
    return;
  }
  setText("consent-error", "");
  state.consented = true;
  state.hands = [];
  state.adding = false;
  capture();
}

function fieldError(inputId, errorId, message) {
  setText(errorId, message || "");
  const input = $(inputId);
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return Boolean(message);
}

async function onCard(event) {
  event.preventDefault();
  setText("card-error", "");
  const name = $("customer-name").value.trim();
  const holder = $("card-holder").value.trim() || name;
  const numberProblem = cardNumberProblem($("card-number").value);
  const expiry = parseExpiry($("card-expiry").value);
  const badNumber = fieldError("card-number", "card-number-error", numberProblem);
  const badExpiry = fieldError("card-expiry", "card-expiry-error", expiry.problem);
  const badPhone = fieldError("phone-last4", "phone-last4-error",
    phoneLast4Problem($("phone-last4").value));
  if (!name) {
    $("customer-name").setAttribute("aria-invalid", "true");
    setText("card-error", "Please enter your name.");
    $("customer-name").focus();
    return;
  }
  $("customer-name").removeAttribute("aria-invalid");
  if (badNumber) {
    $("card-number").focus();
    return;
  }
  if (badExpiry) {
    $("card-expiry").focus();
    return;
  }
  if (badPhone) {
    $("phone-last4").focus();
    $("phone-last4-error").scrollIntoView({ block: "nearest" }); // the message under the field
    return;
  }

  const body = new FormData();
  body.append("name", name);
  body.append("card_number", cardDigits($("card-number").value));
  body.append("exp_month", String(expiry.month));
  body.append("exp_year", String(expiry.year));
  body.append("holder_name", holder);
  body.append("phone_last4", $("phone-last4").value.trim());
  body.append("consent", "true");
  let n = 0;
  for (const hand of state.hands) {
    for (const frame of hand.frames) {
      n += 1;
      body.append("images", frame, `palm-${n}.jpg`);
    }
  }

  const submit = $("card-submit");
  submit.disabled = true;
  submit.textContent = "Enrolling…";
  $("card-form").setAttribute("aria-busy", "true");
  let customer;
  try {
    customer = await postEnrollment(body);
  } catch (err) {
    submit.disabled = false;
    submit.textContent = "Enroll";
    $("card-form").removeAttribute("aria-busy");
    onEnrollError(err);
    return;
  }
  // Done with everything sensitive: drop the card number, the phone digits and the palm frames.
  clearCardForm();
  state.hands = [];
  submit.disabled = false;
  submit.textContent = "Enroll";
  $("card-form").removeAttribute("aria-busy");
  const card = (customer && customer.card) || {};
  setText("done-card", `${brandName(card.brand)} ••••${card.last4 || ""}`);
  setText("done-id", customer.id || "");
  showScreen("done");
  clearTimeout(state.doneTimer);
  state.doneTimer = setTimeout(resetAll, DONE_RESET_MS);
}

function onEnrollError(err) {
  if (err instanceof ApiError && err.keyRejected) {
    showKeyRejected();
    return;
  }
  const code = err instanceof ApiError ? err.code : "";
  if (code === "invalid_card") {
    fieldError("card-number", "card-number-error",
      err.detail || "The card was not accepted — please check the number.");
    $("card-number").focus();
    return;
  }
  if (code === "expired_card") {
    fieldError("card-expiry", "card-expiry-error", "This card has expired.");
    $("card-expiry").focus();
    return;
  }
  if (code === "duplicate_card") {
    setText("card-error", "This card is already enrolled. Use another card, or remove the " +
      "existing enrollment first.");
    $("card-number").focus();
    return;
  }
  if (code === "validation_error" && (err.problem.errors || []).some(
    (e) => /phone_last4/.test(String((e && e.field) || "")))) {
    fieldError("phone-last4", "phone-last4-error", phoneLast4Problem(""));
    $("phone-last4").focus();
    $("phone-last4-error").scrollIntoView({ block: "nearest" });
    return;
  }
  if (code === "palm_already_enrolled") {
    setText("card-error", "This palm is already enrolled. To enroll again, first remove the " +
      "existing enrollment on the Remove my palm page.");
    $("card-submit").focus();
    return;
  }
  if (err instanceof ApiError && err.status === 422 && /palm|image|template|sample/i.test(
    `${code} ${err.detail}`)) {
    // The server could not use the palm frames: capture again, keep the card form filled.
    state.hands = [];
    state.adding = false;
    setText("card-error", "");
    capture("We need a clearer view of your palm — show it again");
    return;
  }
  const text = err instanceof ApiError && err.status === 0
    ? "The PalmPay service cannot be reached. Please try again."
    : `Enrollment failed: ${(err && err.message) || "please try again"}.`;
  setText("card-error", text);
  $("card-submit").focus();
}

function init() {
  if (!bootKiosk()) return;
  $("start").addEventListener("click", () => {
    state.hands = [];
    state.adding = false;
    state.consented = false;
    $("consent-form").reset();
    setText("consent-error", "");
    showScreen("consent");
  });
  $("camera-cancel").addEventListener("click", resetAll);
  $("camera-retry").addEventListener("click", () => capture());
  $("camera-error-cancel").addEventListener("click", resetAll);
  $("other-hand-skip").addEventListener("click", showCardForm);
  $("other-hand-add").addEventListener("click", () => {
    state.adding = true;
    capture();
  });
  $("consent-form").addEventListener("submit", onConsent);
  $("consent-cancel").addEventListener("click", resetAll);
  $("card-form").addEventListener("submit", onCard);
  // Typing in a field clears its message; the next submit checks again.
  for (const [input, error] of [["card-number", "card-number-error"],
    ["card-expiry", "card-expiry-error"], ["phone-last4", "phone-last4-error"]]) {
    $(input).addEventListener("input", () => fieldError(input, error, null));
  }
  $("card-cancel").addEventListener("click", resetAll);
  $("customer-name").addEventListener("change", () => {
    if (!$("card-holder").value.trim()) $("card-holder").value = $("customer-name").value.trim();
  });
  $("done-finish").addEventListener("click", resetAll);
  window.addEventListener("pagehide", stopCapture);
  showScreen("start");
}

init();
