"""OpenAPI details the fuzzer relies on, and OPTIONS / 405 ``Allow``.

Found by the attack: ``OPTIONS /v1/customers/{id}`` answered ``Allow: GET`` although the path
also takes ``DELETE`` (Starlette names the methods of the first route that matched the path);
``images`` and ``frames`` had no ``minItems``, and the capture ``amount`` no ``maximum``.
"""

from __future__ import annotations

from tests.api.conftest import assert_problem

_METHODS = ("get", "post", "put", "patch", "delete")


def _concrete(path: str) -> str:
    return path.replace("{code}", "card_declined").replace("{", "x_").replace("}", "")


def test_options_and_405_name_every_method_of_the_path(api):
    spec = api.client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        documented = {m.upper() for m in item if m in _METHODS}
        url = _concrete(path)
        r = api.client.options(url)
        assert r.status_code == 204 and r.content == b"", (path, r.status_code)
        allow = [m.strip() for m in r.headers["allow"].split(",")]
        assert set(allow) == documented | {"OPTIONS"}, (path, allow)
        unsupported = next(m for m in ("PUT", "PATCH", "DELETE", "POST") if m not in documented)
        r = api.client.request(unsupported, url, headers=api.auth("admin"))
        assert_problem(r, 405, "method_not_allowed")
        assert set(r.headers["allow"].split(", ")) == documented | {"OPTIONS"}, path
    r = api.client.options("/v1/customers/cus_x")
    assert r.headers["allow"] == "GET, DELETE, OPTIONS"
    assert_problem(api.client.options("/v1/nothing"), 404, "not_found")


def _body(spec: dict, path: str, media_type: str) -> tuple[dict, dict]:
    content = spec["paths"][path]["post"]["requestBody"]["content"][media_type]
    schema = content["schema"]
    for branch in schema.get("anyOf", [schema]):
        ref = branch.get("$ref")
        if ref:
            return spec["components"]["schemas"][ref.rsplit("/", 1)[1]], content
    raise AssertionError(f"no schema for {path}")


def test_limits_are_in_the_schema(api_factory):
    api = api_factory(max_images=4, max_payment_amount=500_000)
    spec = api.client.get("/openapi.json").json()
    for path, field in (("/v1/customers", "images"), ("/v1/payments", "frames")):
        schema, content = _body(spec, path, "multipart/form-data")
        files = schema["properties"][field]
        assert (files["minItems"], files["maxItems"]) == (1, 4), path
        assert "image/jpeg" in content["encoding"][field]["contentType"]
    schema, content = _body(spec, "/v1/capture/analyze", "multipart/form-data")
    assert "image/png" in content["encoding"]["image"]["contentType"]
    for path, media_type in (("/v1/payments", "multipart/form-data"),
                             ("/v1/payments/{payment_id}/capture", "application/json"),
                             ("/v1/refunds", "application/json")):
        amount = _body(spec, path, media_type)[0]["properties"]["amount"]
        [integer] = [b for b in amount.get("anyOf", [amount]) if b.get("type") == "integer"]
        assert integer["maximum"] == 500_000, path
    # The text rule is documented where names are required.
    name = _body(spec, "/v1/customers", "multipart/form-data")[0]["properties"]["name"]
    assert "pattern" in name and name["minLength"] == 1
