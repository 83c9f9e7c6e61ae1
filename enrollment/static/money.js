// Pure helpers for card fields, phone digits and amounts: no DOM, no storage, no logging.

/** Digits of a card number as typed (spaces and dashes allowed), or null if anything else. */
export function cardDigits(text) {
  const compact = String(text || "").replace(/[\s-]/g, "");
  return /^\d+$/.test(compact) ? compact : null;
}

/** Luhn (mod 10) check of a digit string. */
export function luhnValid(digits) {
  if (!/^\d{12,19}$/.test(digits || "")) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i -= 1) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** Card number check for the form: null when fine, else a message for the person. */
export function cardNumberProblem(text) {
  const digits = cardDigits(text);
  if (!digits) return "Enter the card number using digits only.";
  if (digits.length < 12 || digits.length > 19) {
    return "That card number has the wrong number of digits — please check it.";
  }
  if (!luhnValid(digits)) return "That card number isn't valid — please check it.";
  return null;
}

/**
 * The last 4 digits of a phone number as typed: null when exactly four ASCII digits (spaces
 * around them are ignored), else a message for the person. The digits narrow the palm search at
 * checkout in large galleries; like the card number they are never stored by the page.
 */
export function phoneLast4Problem(text) {
  if (/^[0-9]{4}$/.test(String(text || "").trim())) return null;
  return "Enter exactly 4 digits: the last 4 of your phone number.";
}

/**
 * Parse an expiry typed as MM/YY, MM/YYYY, MM YY or MMYY.
 * Returns {month, year, problem}: problem is null or a message. `now` is for tests.
 */
export function parseExpiry(text, now = new Date()) {
  const m = String(text || "").trim().match(/^(\d{1,2})\s*[/\-\s.]?\s*(\d{2}|\d{4})$/);
  if (!m) return { month: null, year: null, problem: "Enter the expiry date as MM/YY." };
  const month = Number(m[1]);
  let year = Number(m[2]);
  if (m[2].length === 2) year += 2000;
  if (month < 1 || month > 12) {
    return { month: null, year: null, problem: "The expiry month must be 01 to 12." };
  }
  const thisMonth = now.getFullYear() * 12 + now.getMonth();
  if (year * 12 + (month - 1) < thisMonth) {
    return { month, year, problem: "This card has expired." };
  }
  if (year > now.getFullYear() + 30) {
    return { month, year, problem: "Check the expiry year." };
  }
  return { month, year, problem: null };
}

/** Digits after the decimal point of a currency (ISO 4217 minor unit), from Intl. */
export function currencyExponent(currency) {
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency: currency.toUpperCase() })
      .resolvedOptions().maximumFractionDigits;
  } catch {
    return null;
  }
}

/**
 * Decimal amount as typed ("12.34", "12,5", "1 000") → integer minor units, exactly (no floats).
 * Returns {minor, problem}.
 */
export function toMinorUnits(text, currency) {
  const exponent = currencyExponent(currency || "");
  if (exponent === null) return { minor: null, problem: "Choose a valid currency." };
  const compact = String(text || "").trim().replace(/[\s\u00a0']/g, "");
  const m = compact.match(/^(\d+)(?:[.,](\d*))?$/);
  if (!m) return { minor: null, problem: "Enter the amount as a number, for example 12.50." };
  const fraction = m[2] || "";
  if (fraction.length > exponent) {
    return {
      minor: null,
      problem: exponent === 0
        ? `${currency.toUpperCase()} amounts have no decimals.`
        : `Use at most ${exponent} decimals.`,
    };
  }
  const whole = m[1].replace(/^0+(?=\d)/, "");
  const digits = whole + fraction.padEnd(exponent, "0");
  const minor = Number(digits);
  if (!Number.isSafeInteger(minor)) return { minor: null, problem: "That amount is too large." };
  if (minor <= 0) return { minor: null, problem: "The amount must be more than zero." };
  return { minor, problem: null };
}

/** Integer minor units → "€12.34" for display. */
export function formatMinor(minor, currency) {
  const exponent = currencyExponent(currency || "");
  if (exponent === null) return `${minor} ${String(currency || "").toUpperCase()}`;
  return new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() })
    .format(minor / 10 ** exponent);
}

/** Display name of a card brand as the API spells it (visa, mastercard, amex, …). */
export function brandName(brand) {
  const names = {
    visa: "Visa", mastercard: "Mastercard", amex: "American Express", discover: "Discover",
    diners: "Diners Club", jcb: "JCB", unionpay: "UnionPay", maestro: "Maestro",
  };
  const key = String(brand || "").toLowerCase().replace(/[\s_-]/g, "");
  return names[key] || (brand ? String(brand) : "Card");
}
