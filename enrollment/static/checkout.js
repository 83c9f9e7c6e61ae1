// Checkout: amount (typed by the cashier, or pushed by a terminal as ?amount=<minor>&currency=)
// → good palm frames → POST /v1/payments → Approved / Declined / Not recognised.
//
// In a busy store (more enrolled palms than the palm alone can search safely) the server answers
// 428 narrowing_required: the shopper types the last 4 digits of their phone on the keypad and
// the same frames go again, with the digits and a new Idempotency-Key (a new request, not a
// resend). Repeated wrong digits at this terminal answer 429 too_many_attempts: the shopper is
// asked to pay another way, and nothing is retried. The frames and the digits stay in memory
// only until that request is answered (or the sale ends); nothing is stored or logged.
//
// One Idempotency-Key per sale, not per try: while the outcome of a payment request is unknown
// (the connection failed, the server answered 5xx, or is still busy with it), every resend —
// automatic, or "Try again" on the error screen — sends the same frames with the same key, so a
// payment that did go through is answered instead of charged twice. Only a definitive answer
// (approved, declined, not recognised, 428 …) ends the attempt; a new sale starts afresh.

import {
  ApiError, api, bootKiosk, setText, showKeyRejected, showScreen, sleep, updateMeter,
} from "./common.js";
import { collectPalm, showPalmProgress, startCamera, stopCamera } from "./camera.js";
import { currencyExponent, formatMinor, toMinorUnits } from "./money.js";

/** Good frames sent with one payment. */
const FRAMES_PER_PAYMENT = 4;
/** Resends of one payment request (same Idempotency-Key) when the connection fails. */
const NETWORK_RETRIES = 2;
/** A result screen goes back to a new sale after this long (none after a pushed amount). */
const RESULT_RESET_MS = 30000;
/** The phone-digits screen gives up (and forgets the frames) after this long without a key. */
const DIGITS_TIMEOUT_MS = 60000;
/** Length of the narrowing factor: the last 4 digits of the phone. */
const DIGITS = 4;

const DECLINE_REASONS = {
  card_declined: "Card declined",
  insufficient_funds: "Insufficient funds",
  expired_card: "Card expired",
  do_not_honor: "Card declined",
  lost_card: "Card declined",
  stolen_card: "Card declined",
};

const $ = (id) => document.getElementById(id);
const video = $("video");
const canvas = document.createElement("canvas");

const state = {
  sale: null, // {amount, currency, pushed}
  stream: null,
  abort: null,
  resetTimer: null,
  pending: null, // {frames}: the frames waiting for the phone digits
  attempt: null, // {key, frames, phoneLast4}: a payment request whose outcome is unknown
  digitsTimer: null,
};

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function stopCapture() {
  if (state.abort) state.abort.abort();
  state.abort = null;
  stopCamera(state.stream, video);
  state.stream = null;
}

/** Forget the frames held for the phone-digits retry, and the digits typed so far. */
function clearPending() {
  clearTimeout(state.digitsTimer);
  state.digitsTimer = null;
  state.pending = null;
  $("digits").value = "";
  $("digits").removeAttribute("aria-invalid");
  setText("digits-status", "");
}

function newSale() {
  stopCapture();
  clearPending();
  clearTimeout(state.resetTimer);
  state.sale = null;
  state.attempt = null;
  if (window.location.search) history.replaceState(null, "", window.location.pathname);
  $("amount-form").reset();
  setText("amount-error", "");
  $("amount").removeAttribute("aria-invalid");
  showScreen("amount");
  $("amount").focus();
}

function scheduleReset() {
  clearTimeout(state.resetTimer);
  // A terminal that pushed the amount decides what comes next; a cashier's sale resets.
  if (state.sale && !state.sale.pushed) state.resetTimer = setTimeout(newSale, RESULT_RESET_MS);
}

function onAmount(event) {
  event.preventDefault();
  const currency = $("currency").value;
  const { minor, problem } = toMinorUnits($("amount").value, currency);
  if (problem) {
    setText("amount-error", problem);
    $("amount").setAttribute("aria-invalid", "true");
    $("amount").focus();
    return;
  }
  setText("amount-error", "");
  $("amount").removeAttribute("aria-invalid");
  state.sale = { amount: minor, currency, pushed: false };
  pay();
}

async function pay() {
  clearPending();
  const { amount, currency } = state.sale;
  const label = formatMinor(amount, currency);
  setText("camera-title", `Pay ${label}`);
  setText("prompt", "Show your palm to the camera");
  updateMeter(0, FRAMES_PER_PAYMENT);
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
      target: FRAMES_PER_PAYMENT,
      signal: state.abort.signal,
      onUpdate: showPalmProgress(),
    }));
  } catch (err) {
    stopCapture();
    if (err && err.name === "AbortError") return;
    showOutcomeError(err);
    return;
  }
  stopCapture();
  await submitPayment(frames, null);
}

/** POST the payment: `frames` of one palm, with the phone digits when the server asked. */
async function submitPayment(frames, phoneLast4) {
  const { amount, currency } = state.sale;
  const label = formatMinor(amount, currency);
  setText("processing-amount", label);
  showScreen("processing");
  const body = new FormData();
  frames.forEach((frame, i) => body.append("frames", frame, `frame-${i + 1}.jpg`));
  body.append("amount", String(amount));
  body.append("currency", currency);
  body.append("capture_method", "automatic");
  if (phoneLast4) body.append("phone_last4", phoneLast4);
  // The same key for every resend of this request while its outcome is unknown (see the top).
  const same = state.attempt && state.attempt.frames === frames &&
    state.attempt.phoneLast4 === phoneLast4;
  const idempotencyKey = same ? state.attempt.key : newIdempotencyKey();
  state.attempt = { key: idempotencyKey, frames, phoneLast4 };
  let payment;
  for (let attempt = 0; ; attempt += 1) {
    try {
      payment = await api("v1/payments", {
        method: "POST",
        body,
        headers: { "Idempotency-Key": idempotencyKey },
      });
      break;
    } catch (err) {
      if (err instanceof ApiError && err.status === 0 && attempt < NETWORK_RETRIES) {
        await sleep(1000 * (attempt + 1));
        continue;
      }
      if (!outcomeUnknown(err)) state.attempt = null;
      if (!phoneLast4 && narrowingRequired(err)) {
        askDigits(frames);
        return;
      }
      showOutcomeError(err);
      return;
    }
  }
  state.attempt = null;
  showPayment(payment, label);
}

/** No answer, a server error, or the key still busy: the payment may or may not have gone
 * through, so a resend must reuse the attempt's key. */
function outcomeUnknown(err) {
  if (!(err instanceof ApiError)) return false;
  return err.status === 0 || err.status >= 500 ||
    (err.status === 409 && err.code === "idempotency_conflict");
}

/** "Try again" after an error: the same request again while its outcome is unknown. */
function retryAfterError() {
  if (state.attempt) {
    submitPayment(state.attempt.frames, state.attempt.phoneLast4);
    return;
  }
  pay();
}

/** The server wants the last 4 phone digits before it searches (428 narrowing_required). */
function narrowingRequired(err) {
  return err instanceof ApiError && err.status === 428 &&
    (err.code === "narrowing_required" || err.problem.narrowing === "phone_last4");
}

function askDigits(frames) {
  clearPending();
  state.pending = { frames };
  setText("digits-status", `Type ${DIGITS} digits`);
  showScreen("digits"); // focuses the digits field (autofocus)
  restartDigitsTimer();
}

function restartDigitsTimer() {
  clearTimeout(state.digitsTimer);
  state.digitsTimer = setTimeout(cancelDigits, DIGITS_TIMEOUT_MS);
}

function cancelDigits() {
  clearPending();
  newSale();
}

/** Keep only digits, at most four; announce how many there are (never the digits). */
function onDigitsChanged() {
  const input = $("digits");
  const clean = input.value.replace(/[^0-9]/g, "").slice(0, DIGITS);
  if (clean !== input.value) input.value = clean;
  input.removeAttribute("aria-invalid");
  setText("digits-status", clean.length === DIGITS
    ? "All 4 digits entered"
    : `${clean.length} of ${DIGITS} digits entered`);
  restartDigitsTimer();
}

function keypadPress(key) {
  const input = $("digits");
  if (key === "back") input.value = input.value.slice(0, -1);
  else if (key === "clear") input.value = "";
  else if (/^[0-9]$/.test(key) && input.value.length < DIGITS) input.value += key;
  onDigitsChanged();
}

/** Physical keys anywhere on the digits screen (also when a keypad button has focus). */
function onDigitsKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape") {
    event.preventDefault();
    cancelDigits();
    return;
  }
  if (event.target === $("digits")) return; // the field itself takes the keys
  if (/^[0-9]$/.test(event.key)) keypadPress(event.key);
  else if (event.key === "Backspace") keypadPress("back");
  else return;
  event.preventDefault();
}

function onDigits(event) {
  event.preventDefault();
  const input = $("digits");
  const digits = input.value.trim();
  if (!state.pending) {
    newSale();
    return;
  }
  if (!/^[0-9]{4}$/.test(digits)) {
    input.setAttribute("aria-invalid", "true");
    setText("digits-status", `Please enter all ${DIGITS} digits`);
    input.focus();
    restartDigitsTimer();
    return;
  }
  const { frames } = state.pending;
  clearPending(); // the digits leave the page only in this one request
  submitPayment(frames, digits);
}

function showTooManyTries() {
  clearPending();
  stopCapture();
  showScreen("too-many");
  scheduleReset();
}

function showPayment(payment, label) {
  const status = String((payment && payment.status) || "");
  if (status === "failed" || status === "declined" || status === "canceled") {
    const code = payment.decline_code || payment.failure_code || "card_declined";
    showDeclined(code, "");
    return;
  }
  const method = payment.payment_method || {};
  const who = payment.customer_name ? `${payment.customer_name} ` : "";
  const card = method.last4 ? `••••${method.last4}` : "";
  setText("approved-title", `Approved — ${who}${card}`.trim());
  setText("approved-amount", label);
  showScreen("approved");
  scheduleReset();
}

function showDeclined(code, detail) {
  const reason = DECLINE_REASONS[code] || "Card declined";
  setText("declined-title", `Declined — ${reason}`);
  setText("declined-text", detail || "The card issuer refused this payment.");
  showScreen("declined");
  scheduleReset();
}

function showOutcomeError(err) {
  if (err instanceof ApiError && err.keyRejected) {
    showKeyRejected();
    return;
  }
  if (err instanceof ApiError) {
    const code = String(err.code || "");
    if (err.status === 429 || code === "too_many_attempts") {
      showTooManyTries();
      return;
    }
    if (err.status === 402) {
      showDeclined(String(err.problem.decline_code || code), "");
      return;
    }
    if (/recogni|palm|no_match/.test(code)) {
      setText("not-recognised-text", code === "palm_not_found"
        ? "We couldn't see a palm clearly enough."
        : "We couldn't match this palm to an enrolled customer.");
      showScreen("not-recognised");
      scheduleReset();
      return;
    }
  }
  const text = err instanceof ApiError && err.status === 0
    ? "The PalmPay service cannot be reached, so the result is unknown. Check the payment " +
      "with staff before paying again."
    : `${(err && err.message) || "Something went wrong."} Nothing was charged.`;
  setText("error-text", text);
  showScreen("error");
}

/** A sale pushed by a terminal in the URL: ?amount=<integer minor units>&currency=<ISO code>. */
function pushedSale() {
  const params = new URLSearchParams(window.location.search);
  if (!params.has("amount") && !params.has("currency")) return null;
  const amount = (params.get("amount") || "").trim();
  const currency = (params.get("currency") || "").trim().toLowerCase();
  if (!/^\d{1,15}$/.test(amount) || Number(amount) <= 0 || !/^[a-z]{3}$/.test(currency) ||
      currencyExponent(currency) === null) {
    return { error: "The terminal sent an invalid amount or currency. Enter the sale here." };
  }
  return { amount: Number(amount), currency, pushed: true };
}

function init() {
  if (!bootKiosk()) return;
  $("amount-form").addEventListener("submit", onAmount);
  $("amount").addEventListener("input", () => {
    setText("amount-error", "");
    $("amount").removeAttribute("aria-invalid");
  });
  $("camera-cancel").addEventListener("click", newSale);
  $("camera-retry").addEventListener("click", () => pay());
  $("camera-error-other").addEventListener("click", () => showScreen("pay-other-way"));
  $("retry").addEventListener("click", () => {
    clearTimeout(state.resetTimer);
    pay();
  });
  $("error-retry").addEventListener("click", retryAfterError);
  for (const id of ["other-way", "declined-other", "error-other", "digits-other"]) {
    $(id).addEventListener("click", () => {
      clearTimeout(state.resetTimer);
      clearPending();
      stopCapture();
      showScreen("pay-other-way");
    });
  }
  $("digits-form").addEventListener("submit", onDigits);
  $("digits").addEventListener("input", onDigitsChanged);
  $("keypad").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-key]");
    if (button) keypadPress(button.dataset.key);
  });
  document.querySelector('[data-screen="digits"]').addEventListener("keydown", onDigitsKey);
  $("digits-cancel").addEventListener("click", cancelDigits);
  for (const id of ["approved-new", "declined-new", "other-way-new", "too-many-new"]) {
    $(id).addEventListener("click", newSale);
  }
  window.addEventListener("pagehide", stopCapture);

  const pushed = pushedSale();
  if (pushed && !pushed.error) {
    state.sale = pushed;
    pay();
    return;
  }
  showScreen("amount");
  if (pushed && pushed.error) {
    setText("amount-error", pushed.error);
  }
  $("amount").focus();
}

init();
