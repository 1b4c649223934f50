"""An OpenAPI 3.0 description of the FHIR API, derived from the CapabilityStatement (served at /fhir/openapi.json).

Every path and method in it is an interaction the statement lists, so tools that drive an OpenAPI
description (schemathesis in tests/functional/test_openapi.py, Swagger UI, client generators) exercise
exactly what the server advertises. Resource bodies are described by their top-level elements only,
loosely typed: the server's own validator (r4/validation.py) is the judge of a resource.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..r4.tables import compartment_params, r4_types

FHIR_JSON = "application/fhir+json"
_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
_VID = {"type": "string", "pattern": "^[0-9]{1,9}$"}
_PARAM_SCHEMA: dict[str, dict[str, Any]] = {
    "number": {"type": "string", "example": "gt5"}, "date": {"type": "string", "example": "ge2020-01-01"},
    "quantity": {"type": "string", "example": "5.4|http://unitsofmeasure.org|mmol/L"},
}
# the search result parameters the server reads (fhir_server.search.parse)
_RESULT_PARAMS: list[dict[str, Any]] = [
    {"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    {"name": "_sort", "in": "query", "schema": {"type": "string"}},
    {"name": "_include", "in": "query", "schema": {"type": "string"}},
    {"name": "_revinclude", "in": "query", "schema": {"type": "string"}},
    {"name": "_summary", "in": "query", "schema": {"type": "string", "enum": ["true", "false", "count", "text",
                                                                                "data"]}},
    {"name": "_elements", "in": "query", "schema": {"type": "string"}},
    {"name": "_total", "in": "query", "schema": {"type": "string", "enum": ["none", "estimate", "accurate"]}},
]
_JSON_OF = {"boolean": {"type": "boolean"}, "number": {"type": "number"}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _fhir(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {FHIR_JSON: {"schema": schema}}}


def _responses(ok: str, schema: dict[str, Any], status: str = "200", extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The success response, and the OperationOutcome of every refusal (the server never answers 5xx by design)."""
    out = {status: _fhir(schema, ok)}
    for code in extra:
        out[code] = _fhir(schema, ok)
    out["4XX"] = _fhir(_ref("OperationOutcome"), "refused: an OperationOutcome says why")
    return out


def _resource_schema(rtype: str) -> dict[str, Any]:
    """A resource as its top-level elements (primitive JSON types where R4 has them, else any object)."""
    spec = r4_types()["complex"].get(rtype, {"p": {}})
    primitives = r4_types()["primitives"]
    props: dict[str, Any] = {"resourceType": {"type": "string", "enum": [rtype]}}
    for name, (tname, is_array, *_rest) in sorted(spec["p"].items()):
        if name == "resourceType" or name.startswith("_"):
            continue
        if tname in primitives:
            item = dict(_JSON_OF.get(primitives[tname]["t"], {"type": "string"}))
        else:
            item = {"type": "object"}
        props[name] = {"type": "array", "items": item} if is_array else item
    return {"type": "object", "required": ["resourceType"], "properties": props}


def _search_params(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in resource.get("searchParam", []):
        out.append({"name": p["name"], "in": "query", "required": False,
                    "description": f"{p['type']} search parameter" + (f": {p['documentation']}" if p.get(
                        "documentation") else ""),
                    "schema": _PARAM_SCHEMA.get(p["type"], {"type": "string"})})
    return out + _RESULT_PARAMS


def _type_paths(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The paths of one resource type, with the methods its interactions give."""
    t = r["type"]
    codes = {i["code"] for i in r.get("interaction", [])}
    res, bundle = _ref(t), _ref("Bundle")
    id_param = {"name": "id", "in": "path", "required": True, "schema": _ID}
    paths: dict[str, dict[str, Any]] = {}
    type_ops: dict[str, Any] = {}
    if "search-type" in codes:
        type_ops["get"] = {"operationId": f"search-type-{t}", "summary": f"Search {t}", "tags": [t],
                           "parameters": _search_params(r), "responses": _responses("a searchset Bundle", bundle)}
        paths[f"/{t}/_search"] = {"post": {
            "operationId": f"search-type-post-{t}", "summary": f"Search {t} with a form body", "tags": [t],
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {p["name"]: p["schema"] for p in _search_params(r)}}}}},
            "responses": _responses("a searchset Bundle", bundle)}}
    if "create" in codes:
        headers = [{"name": "If-None-Exist", "in": "header", "schema": {"type": "string"}}] \
            if r.get("conditionalCreate") else []
        type_ops["post"] = {"operationId": f"create-{t}", "summary": f"Create a {t}", "tags": [t],
                            "parameters": headers, "requestBody": {"required": True, "content": {FHIR_JSON: {
                                "schema": res}}},
                            "responses": _responses("created", res, "201", ("200",))}
    if r.get("conditionalUpdate"):
        type_ops["put"] = {"operationId": f"conditional-update-{t}", "summary": f"Update the {t} a search finds",
                           "tags": [t], "parameters": _search_params(r)[:-len(_RESULT_PARAMS)],
                           "requestBody": {"required": True, "content": {FHIR_JSON: {"schema": res}}},
                           "responses": _responses("updated", res, "200", ("201",))}
    if r.get("conditionalDelete") in ("single", "multiple"):
        type_ops["delete"] = {"operationId": f"conditional-delete-{t}", "summary": f"Delete the {t} a search finds",
                              "tags": [t], "parameters": _search_params(r)[:-len(_RESULT_PARAMS)],
                              "responses": _responses("deleted", _ref("OperationOutcome"))}
    if type_ops:
        paths[f"/{t}"] = type_ops
    instance: dict[str, Any] = {}
    if "read" in codes:
        instance["get"] = {"operationId": f"read-{t}", "summary": f"Read a {t}", "tags": [t],
                           "parameters": [{"name": "_elements", "in": "query", "schema": {"type": "string"}},
                                          {"name": "_summary", "in": "query", "schema": _RESULT_PARAMS[4]["schema"]}],
                           "responses": _responses("the resource", res)}
    if "update" in codes:
        instance["put"] = {"operationId": f"update-{t}", "summary": f"Update (or create) a {t} by id", "tags": [t],
                           "parameters": [{"name": "If-Match", "in": "header", "schema": {"type": "string"}}],
                           "requestBody": {"required": True, "content": {FHIR_JSON: {"schema": res}}},
                           "responses": _responses("updated", res, "200", ("201",))}
    if "delete" in codes:
        instance["delete"] = {"operationId": f"delete-{t}", "summary": f"Delete a {t}", "tags": [t],
                              "responses": _responses("deleted", _ref("OperationOutcome"))}
    if instance:
        paths[f"/{t}/{{id}}"] = {"parameters": [id_param], **instance}
    if "history-instance" in codes:
        paths[f"/{t}/{{id}}/_history"] = {"parameters": [id_param], "get": {
            "operationId": f"history-instance-{t}", "summary": f"The versions of a {t}", "tags": [t],
            "parameters": [{"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                           {"name": "_since", "in": "query", "schema": {"type": "string"}}],
            "responses": _responses("a history Bundle", bundle)}}
    if "vread" in codes:
        paths[f"/{t}/{{id}}/_history/{{vid}}"] = {"parameters": [id_param, {
            "name": "vid", "in": "path", "required": True, "schema": _VID}], "get": {
            "operationId": f"vread-{t}", "summary": f"One version of a {t}", "tags": [t],
            "responses": _responses("the version", res)}}
    if "history-type" in codes:
        paths[f"/{t}/_history"] = {"get": {
            "operationId": f"history-type-{t}", "summary": f"The versions of every {t}", "tags": [t],
            "parameters": [{"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                           {"name": "_since", "in": "query", "schema": {"type": "string"}}],
            "responses": _responses("a history Bundle", bundle)}}
    if "search-type" in codes and compartment_params(t):  # GET [base]/Patient/[id]/[type]
        paths[f"/Patient/{{id}}/{t}"] = {"parameters": [id_param], "get": {
            "operationId": f"search-compartment-{t}", "summary": f"Search {t} in one patient's compartment",
            "tags": [t], "parameters": _search_params(r), "responses": _responses("a searchset Bundle", bundle)}}
    for op in r.get("operation", []):
        if op["name"] == "everything" and t == "Patient":
            params: list[dict[str, Any]] = [{"name": n, "in": "query", "schema": {"type": "string"}}
                                            for n in ("start", "end", "_since", "_type")]
            params.append({"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0}})
            get = {"operationId": "everything-Patient", "summary": "Patient/$everything", "tags": [t],
                   "parameters": params, "responses": _responses("a searchset Bundle", bundle)}
            paths[f"/{t}/{{id}}/$everything"] = {"parameters": [id_param], "get": get}
        elif op["name"] == "export":
            path = f"/{t}/{{id}}/$export" if t == "Group" else f"/{t}/$export"
            paths[path] = {**({"parameters": [id_param]} if t == "Group" else {}), "get": _export_op(f"export-{t}", t)}
    return paths


def _export_op(op_id: str, tag: str) -> dict[str, Any]:
    """A Bulk Data kick-off (hl7.org/fhir/uv/bulkdata/export.html): 202 with the status URL in Content-Location."""
    params = [{"name": "Prefer", "in": "header", "required": True, "schema": {"type": "string", "enum": ["respond-async"]}},
              *[{"name": n, "in": "query", "schema": {"type": "string"}}
                for n in ("_outputFormat", "_type", "_since", "_typeFilter")]]
    return {"operationId": op_id, "summary": "Bulk Data $export kick-off", "tags": [tag], "parameters": params,
            "responses": {"202": {"description": "queued; poll the Content-Location URL",
                                  "headers": {"Content-Location": {"schema": {"type": "string"}}}},
                          "400": {"description": "a parameter the export cannot honour"}}}


def _security(rest: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, list[str]]]]:
    """Bearer tokens, and the SMART OAuth endpoints when the statement names them."""
    schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer",
                                          "description": "A SMART on FHIR access token"}}
    uris = {}
    for ext in (rest.get("security") or {}).get("extension", []):
        if ext.get("url") == _OAUTH_URIS:
            uris = {e["url"]: e.get("valueUri") for e in ext.get("extension", [])}
    if uris.get("authorize") and uris.get("token"):
        schemes["smart"] = {"type": "oauth2", "flows": {
            "authorizationCode": {"authorizationUrl": uris["authorize"], "tokenUrl": uris["token"], "scopes": {}},
            "clientCredentials": {"tokenUrl": uris["token"], "scopes": {}}}}
    return schemes, [{name: []} for name in schemes]


_CACHE: dict[str, str] = {}


def openapi_text(cs: dict[str, Any]) -> str:
    """`openapi_description(cs)` as compact JSON, built once per statement (it is 2 MB; the date aside, the
    statement of a running server never changes)."""
    key = json.dumps({k: v for k, v in cs.items() if k != "date"}, sort_keys=True)
    key = hashlib.sha256(key.encode()).hexdigest()
    if key not in _CACHE:
        if len(_CACHE) > 4:
            _CACHE.clear()
        _CACHE[key] = json.dumps(openapi_description(cs), separators=(",", ":"))
    return _CACHE[key]


def openapi_description(cs: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI 3.0.3 of the REST interactions `cs` (a completed CapabilityStatement) lists."""
    rest = cs["rest"][0]
    base = (cs.get("implementation") or {}).get("url") or cs.get("url", "").removesuffix("/metadata")
    system = {i["code"] for i in rest.get("interaction", [])}
    bundle = _ref("Bundle")
    paths: dict[str, Any] = {"/metadata": {"get": {
        "operationId": "capabilities", "summary": "The CapabilityStatement", "tags": ["system"], "security": [],
        "responses": _responses("the CapabilityStatement", {"type": "object"})}}}
    root: dict[str, Any] = {}
    if "search-system" in system:
        params = [{"name": p["name"], "in": "query", "schema": {"type": "string"}} for p in rest.get("searchParam", [])]
        root["get"] = {"operationId": "search-system", "summary": "Search across types (_type)", "tags": ["system"],
                       "parameters": params + _RESULT_PARAMS, "responses": _responses("a searchset Bundle", bundle)}
    if system & {"transaction", "batch"}:
        root["post"] = {"operationId": "transaction", "summary": "A transaction or batch Bundle", "tags": ["system"],
                        "requestBody": {"required": True, "content": {FHIR_JSON: {"schema": bundle}}},
                        "responses": _responses("a transaction-response or batch-response Bundle", bundle)}
    if root:
        paths["/"] = root
    if "history-system" in system:
        paths["/_history"] = {"get": {
            "operationId": "history-system", "summary": "The versions of every resource", "tags": ["system"],
            "parameters": [{"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                           {"name": "_since", "in": "query", "schema": {"type": "string"}}],
            "responses": _responses("a history Bundle", bundle)}}
    for op in rest.get("operation", []):
        if op["name"] == "export":
            paths["/$export"] = {"get": _export_op("export", "system")}
    schemas: dict[str, Any] = {
        "OperationOutcome": {"type": "object", "required": ["resourceType", "issue"], "properties": {
            "resourceType": {"type": "string", "enum": ["OperationOutcome"]},
            "issue": {"type": "array", "items": {"type": "object", "required": ["severity", "code"]}}}},
        "Bundle": _resource_schema("Bundle"),
    }
    for r in rest.get("resource", []):
        paths.update(_type_paths(r))
        schemas[r["type"]] = _resource_schema(r["type"])
    schemes, security = _security(rest)
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{(cs.get('software') or {}).get('name', 'FHIR')} FHIR R4 API",
                 "version": str((cs.get("software") or {}).get("version", cs.get("fhirVersion", "4.0.1"))),
                 "description": "Generated from the server's CapabilityStatement (GET /metadata)."},
        "servers": [{"url": base}],
        "security": security,
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": schemes},
    }
