"""HTTP plumbing for the FHIR API: request bodies, Prefer handling and response building."""
from __future__ import annotations

import json
from functools import lru_cache
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from flask import Request, Response, current_app, request

from ..errors import BadRequest, FhirError, PayloadTooLarge, UnsupportedMediaType, outcome
from ..r4.dates import http_date
from ..stored import Stored

FHIR_JSON = "application/fhir+json; charset=utf-8"
MAX_BODY = 32 * 1024 * 1024
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
last_modified = lru_cache(maxsize=4096)(http_date)  # a stored instant's header text never changes


def body_limit(req: Request) -> int:
    """The largest body accepted (bytes); 413 when the declared length is already over it."""
    limit = int(req.environ.get("carespace.max_body") or current_app.config.get("FHIR_MAX_BODY") or MAX_BODY)
    length = req.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}")
    return limit


def form_items(req: Request) -> list[tuple[str, str]]:
    """The fields of a POST _search body (application/x-www-form-urlencoded only)."""
    body_limit(req)
    ctype = (req.mimetype or "").lower()
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(f"POST _search takes application/x-www-form-urlencoded, not {ctype!r}")
    return list(req.form.items(multi=True))


def json_body(req: Request) -> Any:
    """The parsed JSON body; 413 for oversize, 415 for non-JSON types, 400 for malformed JSON."""
    limit = body_limit(req)
    ctype = (req.mimetype or "").lower()
    if ctype and ctype not in _JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; send application/fhir+json")
    raw = req.get_data(cache=True)
    if len(raw) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("The body's JSON nests too deeply") from None


def prefer(name: str, default: str | None = None) -> str | None:
    """Value of one token of the Prefer header (return=..., handling=...)."""
    for part in request.headers.get("Prefer", "").split(","):
        for item in part.split(";"):
            k, _, v = item.strip().partition("=")
            if k.strip() == name:
                return v.strip().strip('"')
    return default


def fhir_response(body: str | dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    text = body if isinstance(body, str) or body is None else json.dumps(body, separators=(",", ":"))
    resp = Response(text or "", status=status, content_type=FHIR_JSON)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def resource_response(st: Stored, base: str, status: int = 200, created: bool = False) -> Response:
    """A resource with ETag / Last-Modified / Location, honouring Prefer: return=..."""
    loc = f"{base}/{st.resource_type}/{st.id}/_history/{st.version}"
    headers = {"ETag": st.etag, "Last-Modified": last_modified(st.last_updated)}
    if created or status == 201 or request.method in ("PUT", "POST"):
        headers["Location"] = loc
        if request.method == "POST" and created:
            headers["Content-Location"] = loc
    ret = prefer("return", "representation") if request.method in ("POST", "PUT") else "representation"
    if ret == "minimal":
        return fhir_response(None, status, headers)
    if ret == "OperationOutcome":
        oo = {"resourceType": "OperationOutcome",
              "issue": [outcome("information", "informational", f"{st.resource_type}/{st.id} version {st.version} stored")]}
        return fhir_response(oo, status, headers)
    return fhir_response(st.text, status, headers)


def error_response(err: FhirError) -> Response:
    resp = fhir_response(err.to_operation_outcome(), err.status, err.headers)
    if err.status == 401 and "WWW-Authenticate" not in resp.headers:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="fhir"'
    return resp


def status_line(code: int) -> str:
    return f"{code} {HTTPStatus(code).phrase}"


def page_links(base_path: str, items: list[tuple[str, str]], next_cursor: str | None,
               prev_cursor: str | None) -> list[tuple[str, str]]:
    """self / next / previous links of a search, keeping the criteria and swapping _cursor."""
    plain = [(k, v) for k, v in items if k != "_cursor"]
    cursor = next((v for k, v in items if k == "_cursor"), None)
    links = [("self", base_path + ("?" + urlencode(plain + ([("_cursor", cursor)] if cursor else [])) if plain or cursor else ""))]
    if next_cursor:
        links.append(("next", base_path + "?" + urlencode(plain + [("_cursor", next_cursor)])))
    if prev_cursor:
        links.append(("previous", base_path + "?" + urlencode(plain + [("_cursor", prev_cursor)])))
    return links
