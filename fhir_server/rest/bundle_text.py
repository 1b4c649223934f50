"""Assemble Bundle JSON from stored resource text without parsing it (the fast read path)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from ..r4.dates import now_instant
from ..r4.tables import mandatory_elements, summary_elements

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "Resource encoded in summary mode"}


def shape(text: str, summary: str | None, elements: list[str] | None) -> str:
    """Apply _summary / _elements (the only read paths that parse the stored JSON)."""
    if not summary and not elements:
        return text
    res: dict[str, Any] = json.loads(text)
    rtype = res["resourceType"]
    if summary == "data":
        res.pop("text", None)
    elif summary == "text":
        keep = {"resourceType", "id", "meta", "text"}
        res = {k: v for k, v in res.items() if k in keep}
    elif summary == "true":
        keep = set(summary_elements().get(rtype, [])) | {"resourceType"}
        res = {k: v for k, v in res.items() if k in keep}
    if elements:  # what was asked, and the mandatory elements so the result is still a valid resource
        keep = {"resourceType", "id", "meta"} | set(elements) | mandatory_elements(rtype)
        res = {k: v for k, v in res.items() if k in keep or (k[:1] == "_" and k[1:] in keep)}
    meta = dict(res.get("meta") or {})
    meta["tag"] = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"] + [SUBSETTED]
    res["meta"] = meta
    return json.dumps(res, separators=(",", ":"), ensure_ascii=False)


def search_bundle(base: str, entries: Iterable[tuple[str, str, str, str]], total: int | None,
                  links: list[tuple[str, str]], outcome: dict[str, Any] | None = None) -> str:
    """A searchset Bundle; entries are (type, id, text, mode) with mode match|include|outcome."""
    stamp, _ = now_instant()
    head: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": stamp},
                            "type": "searchset"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    parts = []
    for rtype, fid, text, mode in entries:
        full = json.dumps(f"{base}/{rtype}/{fid}")
        parts.append(f'{{"fullUrl":{full},"resource":{text},"search":{{"mode":"{mode}"}}}}')
    if outcome is not None:
        parts.append('{"resource":' + json.dumps(outcome, separators=(",", ":"))
                     + ',"search":{"mode":"outcome"}}')
    body = json.dumps(head, separators=(",", ":"))[:-1]
    return body + (',"entry":[' + ",".join(parts) + "]}" if parts else "}")


def history_bundle(base: str, rows: Iterable[Any], links: list[tuple[str, str]], total: int | None) -> str:
    """A history Bundle from ResourceVersion rows (newest first)."""
    stamp, _ = now_instant()
    head: dict[str, Any] = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": stamp},
                            "type": "history"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    parts = []
    for v in rows:
        full = json.dumps(f"{base}/{v.res_type}/{v.fhir_id}")
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}.get(v.method, "200 OK")
        url = v.res_type if v.method == "POST" else f"{v.res_type}/{v.fhir_id}"
        req = json.dumps({"method": v.method, "url": url})
        resp = json.dumps({"status": status, "etag": f'W/"{v.version}"', "lastModified": v.last_updated})
        res = f'"resource":{v.text},' if v.text else ""
        parts.append(f'{{"fullUrl":{full},{res}"request":{req},"response":{resp}}}')
    body = json.dumps(head, separators=(",", ":"))[:-1]
    return body + (',"entry":[' + ",".join(parts) + "]}" if parts else "}")
