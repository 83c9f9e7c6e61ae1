"""The one catalogue of problem codes: each ``code`` has one HTTP status, a title and a
description (:mod:`palmpay.api.errors` turns them into RFC 9457 problem documents)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "ProblemType", "problem_type"]


def problem_type(code: str) -> str:
    """The stable ``type`` URI reference of ``code``."""
    return f"/problems/{code}"



@dataclass(frozen=True)
class ProblemType:
    """Catalogue entry of one problem ``code``: its HTTP status, title and a description."""

    code: str
    status: int
    title: str
    description: str

    @property
    def type(self) -> str:
        """The stable ``type`` URI reference: ``/problems/<code>``."""
        return problem_type(self.code)


def _catalogue(*entries: tuple[str, int, str, str]) -> dict[str, ProblemType]:
    out: dict[str, ProblemType] = {}
    for code, status, title, description in entries:
        if code in out:
            raise ValueError(f"problem code {code!r} is catalogued twice")
        out[code] = ProblemType(code, status, title, description)
    return out


#: Every problem code the API answers with, each with its one HTTP status.
#:
#: - 400/413/415/422: the request is malformed or a value in it is invalid.
#: - 401/403: no valid API key, or one whose scope forbids the operation.
#: - 402: the card was refused by the acquirer (the request was valid).
#: - 404: the route or object does not exist.
#: - 428: the search needs a narrowing value (the shopper's phone digits).
#: - 429: too many wrong tries from one terminal or kiosk, or too many requests.
#: - 409: the object is in a state that forbids the operation, or the request conflicts with
#:   another (a card or palm already enrolled, an ``Idempotency-Key`` reused).
#: - 500/502/503: the server, the acquirer or the start-up failed.
CATALOGUE: dict[str, ProblemType] = _catalogue(
    # authentication and routing
    ("unauthorized", 401, "Unauthorized", "No API key was given, or the key is unknown or "
     "revoked. Send `Authorization: Bearer <secret>`."),
    ("forbidden", 403, "Forbidden", "The API key is valid but its scope does not allow this "
     "operation (kiosk keys enroll, terminal keys take payments, admin keys do everything)."),
    ("not_found", 404, "Not found", "No such route or object."),
    ("method_not_allowed", 405, "Method not allowed",
     "The route exists but not with this HTTP method (see `Allow`)."),
    ("bad_request", 400, "Bad request", "The request body could not be parsed."),
    ("payload_too_large", 413, "Payload too large",
     "The request body, one uploaded image or the images of one request together are larger "
     "than the server accepts: bytes (`max_upload_bytes`, `max_image_bytes`) or pixels declared "
     "in the image headers, checked before decoding (`max_image_pixels`, `max_request_pixels`)."),
    ("unsupported_media_type", 415, "Unsupported media type",
     "The body has the wrong content type (for example JSON sent to an endpoint that takes "
     "multipart/form-data), or an uploaded file is not a JPEG, PNG or WebP image (BMP, TIFF, "
     "GIF and other formats are refused whatever the declared part type)."),
    ("validation_error", 422, "Validation error",
     "One or more request fields are missing or invalid; `errors` lists them as "
     "{field, message, type}."),
    ("internal_error", 500, "Internal error",
     "The server failed unexpectedly. Retry with the same Idempotency-Key; the `incident` id "
     "is in the server log."),
    ("service_unavailable", 503, "Service unavailable", "The server is not ready."),
    ("server_busy", 503, "Server busy",
     "Every image decode slot (`decode_workers`) stayed busy for `decode_wait_s`; retry after "
     "`Retry-After` seconds."),
    # idempotency
    ("idempotency_conflict", 409, "Idempotency conflict",
     "The Idempotency-Key was already used with a different request, or a request with this "
     "key is still being processed."),
    # images and palms
    ("invalid_image", 422, "Invalid image",
     "An uploaded image could not be decoded; `image` names the part and file."),
    ("palm_not_found", 422, "No usable palm",
     "Too few images showed a usable palm (ROI found and quality gates passed); `images` gives "
     "each file's reason."),
    ("palm_not_recognised", 422, "Palm not recognised",
     "The palm does not match any enrolled customer. Ask the shopper to enroll or to pay "
     "another way."),
    ("palm_already_enrolled", 409, "Palm already enrolled",
     "This palm is already enrolled by another customer."),
    ("presentation_attack", 422, "Presentation attack",
     "The checkout frames look like a presentation attack (a still photo or a looping "
     "replay, a phone screen), not a live hand (`PALMPAY_LIVENESS=enforce`); `cues` names the "
     "failed checks. Ask the shopper to present their hand again or to pay another way."),
    # payments core: request values
    ("invalid_request", 422, "Invalid request", "A request value is invalid."),
    ("webhook_url_refused", 422, "Webhook URL refused",
     "The webhook URL's host is not a public internet address: it is loopback, private, "
     "link-local, multicast, unspecified or reserved, resolves to such an address, or does "
     "not resolve. Webhooks are only sent to public hosts (`PALMPAY_WEBHOOK_ALLOW_PRIVATE` "
     "lifts this for development)."),
    ("invalid_card", 422, "Invalid card",
     "The card number, expiry or holder name is invalid (digits, length, Luhn check)."),
    ("invalid_amount", 422, "Invalid amount",
     "Amounts are positive integers in the currency's minor unit."),
    ("invalid_currency", 422, "Invalid currency", "Unknown ISO 4217 currency code."),
    ("invalid_template", 422, "Invalid template", "A palm template is malformed."),
    ("amount_too_large", 422, "Amount too large", "The amount exceeds the largest allowed."),
    ("consent_required", 422, "Consent required",
     "Enrollment needs the shopper's explicit biometric consent (`consent=true`)."),
    # declines (the acquirer said no)
    ("card_declined", 402, "Card declined", "The card issuer declined the payment; "
     "`decline_code` may say why and `payment` is the failed payment."),
    ("insufficient_funds", 402, "Insufficient funds",
     "The card has insufficient funds; `payment` is the failed payment."),
    ("expired_card", 402, "Expired card",
     "The card has expired: refused at enrollment, or declined at payment (then `payment` is "
     "the failed payment)."),
    # missing objects
    ("customer_not_found", 404, "Customer not found", "No customer has this id."),
    ("payment_not_found", 404, "Payment not found", "No payment has this id."),
    ("refund_not_found", 404, "Refund not found", "No refund has this id."),
    # state conflicts
    ("payment_unexpected_state", 409, "Payment in unexpected state",
     "The payment's status does not allow this operation (for example capturing a canceled "
     "payment)."),
    ("duplicate_card", 409, "Duplicate card", "This card is already enrolled."),
    ("customer_deleted", 409, "Customer deleted", "The customer was deleted."),
    ("card_unavailable", 409, "Card unavailable", "The customer's card is not usable."),
    # acquirer failure
    # open-set narrowing (docs/open_set.md)
    ("narrowing_required", 428, "Narrowing required",
     "The store has more enrolled palms than the palm alone can search safely (N_safe). Ask "
     "the shopper for the last 4 digits of their phone and retry with the same frames, "
     "`phone_last4` and a new Idempotency-Key; `narrowing` names the field."),
    ("too_many_attempts", 429, "Too many attempts",
     "This terminal sent too many unrecognised palms or wrong phone digits in a row, or this "
     "kiosk too many failed unenroll proofs, and is locked out for a while (`Retry-After`). "
     "Ask the shopper to pay another way, or staff to help."),
    # abuse controls (palmpay/api/ratelimit.py)
    ("rate_limited", 429, "Rate limited",
     "Too many requests from this API key or terminal, or too many unknown API keys from this "
     "address; retry after `Retry-After` seconds (`retry_after`)."),
    ("verification_failed", 422, "Not verified",
     "Unenrolling needs the shopper's palm and the last 4 digits of the enrolled card, both "
     "matching the customer. One of them did not match, or there is no such customer: the "
     "answer does not say which. Repeated failures lock the kiosk out (`too_many_attempts`)."),
    ("processor_error", 502, "Processor error",
     "The card processor failed (not a decline); try again later."),
)
