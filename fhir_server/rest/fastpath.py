"""Plain reads by id answered before Flask's routing: the most frequent request of every FHIR client."""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request

from ..access.context import AccessContext
from .http import FHIR_JSON, last_modified

_READ = re.compile(r"/fhir/([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})")
# Anything that changes the answer of a read goes to the Flask view: CORS, conditional reads, HEAD, queries.
_TO_FLASK = ("HTTP_ORIGIN", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH")


class HeaderResolver:
    """An access resolver computed from the Authorization header alone, so it also works outside Flask.

    `from_header` must have no side effects when it raises; calling the resolver in a request adds `on_refused`
    (e.g. auditing a bad token), which then runs once per request whichever path answers it.
    """

    def __init__(self, from_header: Callable[[str], AccessContext],
                 on_refused: Callable[[Exception], None] | None = None) -> None:
        self.from_header = from_header
        self.on_refused = on_refused

    def __call__(self) -> AccessContext:
        try:
            return self.from_header(request.headers.get("Authorization", ""))
        except Exception as exc:
            if self.on_refused is not None:
                self.on_refused(exc)
            raise


class ReadFastPath:
    """WSGI middleware: `GET /fhir/<type>/<id>` with nothing that alters the answer is served by the same
    resolver and `FhirService.read` as the Flask view, with the same headers and body. Every other request,
    and every read that fails (401, 403, 404, 410, ...), goes to Flask, which answers it with its errors.
    The headers Flask adds to every answer after the view (security headers, caching) are the embedding
    application's: it lists them in `app.extensions["fhir_response_headers"]`, and they are sent here too."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.inner = app.wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "GET" and not environ.get("QUERY_STRING") \
                and not any(k in environ for k in _TO_FLASK):
            m = _READ.fullmatch(environ.get("PATH_INFO", ""))
            resolver = self.app.extensions.get("fhir_access_resolver")
            if m is not None and isinstance(resolver, HeaderResolver) and self.app.config.get("FHIR_READ_FAST_PATH", True):
                try:
                    st = self.app.extensions["fhir_service"].read(
                        resolver.from_header(environ.get("HTTP_AUTHORIZATION", "")), m[1], m[2])
                except Exception:  # noqa: BLE001, S110 - Flask redoes the read and answers with its error handling
                    pass
                else:
                    body = st.text.encode()
                    start_response("200 OK", [("Content-Type", FHIR_JSON), ("Content-Length", str(len(body))),
                                              ("ETag", st.etag), ("Last-Modified", last_modified(st.last_updated)),
                                              *self.app.extensions.get("fhir_response_headers", ())])
                    return [body]
        return self.inner(environ, start_response)  # type: ignore[no-any-return]
