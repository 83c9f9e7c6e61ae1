// Shared by every kiosk page: the API key, the API client, screens and focus.
//
// The API key comes from the URL fragment (#key=<secret>): browsers never send the fragment to
// the server, so it is in no request line and no access log. It is kept in memory and in
// sessionStorage (this tab only, gone when the tab closes) so that moving between the kiosk's
// pages keeps working, and removed from the address bar at once. Card data is never stored.

const KEY_STORAGE = "palmpay.kiosk.key";

let apiKey = null;

/** Read the key from #key=… (preferred) or this tab's sessionStorage; null when absent. */
export function loadKey() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromUrl = fragment.get("key");
  if (fromUrl) {
    apiKey = fromUrl.trim();
    try {
      sessionStorage.setItem(KEY_STORAGE, apiKey);
    } catch {
      // Storage disabled: the key lives in memory for this page only.
    }
    // Take the secret out of the address bar (and out of history) without reloading.
    fragment.delete("key");
    const rest = fragment.toString();
    history.replaceState(null, "", window.location.pathname + window.location.search +
      (rest ? `#${rest}` : ""));
  } else {
    try {
      apiKey = sessionStorage.getItem(KEY_STORAGE);
    } catch {
      apiKey = null;
    }
  }
  return apiKey || null;
}

/** Forget the key (used when the server rejects it). */
export function forgetKey() {
  apiKey = null;
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing stored
  }
}

/** An error answer of the API (RFC 9457 problem details) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, problem) {
    const p = problem && typeof problem === "object" ? problem : {};
    super(p.detail || p.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = p.code || (status === 0 ? "network_error" : `http_${status}`);
    this.title = p.title || "";
    this.detail = p.detail || "";
    this.problem = p;
  }

  /** The key is missing, unknown, revoked or lacks the scope: nothing on this kiosk will work. */
  get keyRejected() {
    return this.status === 401 || this.status === 403;
  }
}

/** URL of an API path, relative to the kiosk pages (served at <root>/kiosk/<page>). */
export function apiUrl(path) {
  return new URL(`../${path.replace(/^\//, "")}`, window.location.href).toString();
}

/**
 * Call the API with the kiosk's key. `body` is a FormData (multipart) or undefined.
 * Resolves to the parsed JSON body; rejects with ApiError.
 */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  let response;
  try {
    response = await fetch(apiUrl(path), {
      method,
      body,
      signal,
      headers: { Accept: "application/json", Authorization: `Bearer ${apiKey || ""}`, ...headers },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, { detail: "The PalmPay service cannot be reached." });
  }
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Show one `<section data-screen=name>` of the page, hide the others, move focus to it. */
export function showScreen(name, { focus = true } = {}) {
  let shown = null;
  for (const section of document.querySelectorAll("[data-screen]")) {
    const on = section.dataset.screen === name;
    section.hidden = !on;
    if (on) shown = section;
  }
  if (!shown) throw new Error(`no screen ${name}`);
  document.body.dataset.current = name;
  if (focus) {
    // Headings carry tabindex=-1: focusing one tells screen readers where they are and puts
    // the keyboard at the top of the new screen.
    const target = shown.querySelector("[autofocus]") || shown.querySelector("h1, h2");
    if (target) target.focus({ preventScroll: false });
  }
  return shown;
}

/** Set the text of an element found by id. */
export function setText(id, text) {
  const el = document.getElementById(id);
  if (el) el.textContent = text;
  return el;
}

/** Resolve after `ms` milliseconds, or reject with AbortError when `signal` fires. */
/** Show `count` of `target` good frames on the page's progress meter (#progress). */
export function updateMeter(count, target) {
  const bar = document.getElementById("progress");
  bar.setAttribute("aria-valuemax", String(target));
  bar.setAttribute("aria-valuenow", String(count));
  document.getElementById("progress-fill").style.width =
    `${Math.round((100 * count) / target)}%`;
  setText("progress-count", `${count} of ${target}`);
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(new DOMException("aborted", "AbortError"));
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      }, { once: true });
    }
  });
}

/** Page start-up shared by every page: the key, or the "not provisioned" screen. */
export function bootKiosk() {
  // A setup link opened over an already loaded page only changes the fragment (no new page
  // load): take the key and start afresh.
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(window.location.hash.slice(1)).has("key")) {
      loadKey();
      window.location.reload();
    }
  });
  const key = loadKey();
  if (!key) {
    showScreen("unprovisioned");
    return false;
  }
  return true;
}

/** Show the "key rejected" screen and forget the key. */
export function showKeyRejected() {
  forgetKey();
  showScreen("key-rejected");
}
