// Unenroll: customer id → DELETE /v1/customers/{id} → confirmation.

import { ApiError, api, bootKiosk, setText, showKeyRejected, showScreen } from "./common.js";

const $ = (id) => document.getElementById(id);

function showForm() {
  $("unenroll-form").reset();
  setText("unenroll-error", "");
  $("customer-id").removeAttribute("aria-invalid");
  showScreen("form");
  $("customer-id").focus();
}

function fail(message) {
  setText("unenroll-error", message);
  $("customer-id").setAttribute("aria-invalid", "true");
  $("customer-id").focus();
}

async function onSubmit(event) {
  event.preventDefault();
  const id = $("customer-id").value.trim();
  if (!/^[A-Za-z0-9_-]{3,64}$/.test(id)) {
    fail("Enter the customer ID exactly as shown at enrollment, for example cus_….");
    return;
  }
  const submit = $("unenroll-submit");
  submit.disabled = true;
  try {
    await api(`v1/customers/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (err) {
    submit.disabled = false;
    if (err instanceof ApiError && err.keyRejected) {
      showKeyRejected();
      return;
    }
    if (err instanceof ApiError && (err.status === 404 || err.code === "customer_not_found")) {
      fail("No enrollment has this customer ID. Check it and try again.");
      return;
    }
    if (err instanceof ApiError && err.code === "customer_deleted") {
      fail("This enrollment was already removed.");
      return;
    }
    fail(err instanceof ApiError && err.status === 0
      ? "The PalmPay service cannot be reached. Please try again."
      : `Removal failed: ${(err && err.message) || "please try again"}.`);
    return;
  }
  submit.disabled = false;
  setText("removed-id", id);
  $("unenroll-form").reset();
  showScreen("removed");
}

function init() {
  if (!bootKiosk()) return;
  $("unenroll-form").addEventListener("submit", onSubmit);
  $("customer-id").addEventListener("input", () => {
    setText("unenroll-error", "");
    $("customer-id").removeAttribute("aria-invalid");
  });
  $("removed-done").addEventListener("click", showForm);
  showForm();
}

init();
