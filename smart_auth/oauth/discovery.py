"""SMART discovery documents: .well-known/smart-configuration, openid-configuration and the
CapabilityStatement's security section (the oauth-uris extension the Python fhirclient reads)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CAPABILITIES = ["launch-standalone", "launch-ehr", "client-public", "client-confidential-symmetric",
                "client-confidential-asymmetric", "sso-openid-connect", "context-standalone-patient",
                "context-ehr-patient", "context-ehr-encounter", "context-banner", "context-style",
                "permission-offline", "permission-online", "permission-patient", "permission-user", "permission-v1",
                "permission-v2", "authorize-post"]
# Bulk Data $export (hl7.org/fhir/uv/bulkdata/authorization.html) takes SMART Backend Services tokens with these
BULK_SCOPES = ["system/*.rs", "system/*.read"]
SCOPES = ["openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access",
          "patient/*.rs", "patient/*.cruds", "patient/*.read", "patient/*.write", "patient/*.*", "user/*.rs",
          "user/*.cruds", "user/*.read", "user/*.*", "system/*.rs", "system/*.cruds", "system/*.read", "system/*.*"]
AUTH_METHODS = ["client_secret_basic", "private_key_jwt", "none"]
SMART_ONLY = ("capabilities", "management_endpoint", "bulk_data_operations", "bulk_data_scopes")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


def endpoints(cfg: Mapping[str, Any]) -> dict[str, str]:
    base = cfg["BASE_URL"]
    out = {"authorize": f"{base}/oauth/authorize", "token": f"{base}/oauth/token",
           "introspect": f"{base}/oauth/introspect", "revoke": f"{base}/oauth/revoke", "manage": f"{base}/apps",
           "jwks": f"{base}/oauth/jwks", "style": f"{base}/oauth/smart-style.json"}
    if cfg.get("DYNAMIC_CLIENT_REGISTRATION", True):
        out["register"] = f"{base}/oauth/register"
    return out


def smart_configuration(cfg: Mapping[str, Any]) -> dict[str, Any]:
    e = endpoints(cfg)
    doc: dict[str, Any] = {
        "issuer": cfg["BASE_URL"], "jwks_uri": e["jwks"],
        "authorization_endpoint": e["authorize"], "token_endpoint": e["token"],
        "introspection_endpoint": e["introspect"], "revocation_endpoint": e["revoke"],
        "management_endpoint": e["manage"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": SCOPES, "capabilities": CAPABILITIES,
        # SMART Backend Services for Bulk Data: the operations these tokens reach, the scopes they take
        "bulk_data_operations": [f"{cfg['BASE_URL']}/fhir/$export", f"{cfg['BASE_URL']}/fhir/Patient/$export",
                                 f"{cfg['BASE_URL']}/fhir/Group/[id]/$export"],
        "bulk_data_scopes": BULK_SCOPES,
    }
    if "register" in e:
        doc["registration_endpoint"] = e["register"]
    return doc


def openid_configuration(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 / RFC 8414 section 2: the SMART document's fields (the same values, so the
    two documents agree) without its SMART-only members, plus the OpenID Provider fields."""
    doc = {k: v for k, v in smart_configuration(cfg).items() if k not in SMART_ONLY}
    doc.update({"subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "name", "nonce"]})
    return doc


def security_hook(cfg: Mapping[str, Any]) -> Any:
    """A capability_security_hooks callable adding rest.security (SMART service + oauth-uris)."""

    def hook(rest: dict[str, Any]) -> None:
        e = endpoints(cfg)
        names = ["authorize", "token", "introspect", "revoke", "manage", "register"]
        rest["security"] = {
            "cors": True,
            "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                     "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
                         "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}],
            "extension": [{"url": OAUTH_URIS,
                           "extension": [{"url": n, "valueUri": e[n]} for n in names if n in e]}],
            "description": "SMART App Launch 2 (authorization code with PKCE, refresh, OpenID Connect) "
                           "and SMART Backend Services (client_credentials with private_key_jwt).",
        }

    return hook


STYLE = {"color_background": "#f6f8fa", "color_error": "#b00020", "color_highlight": "#0b5cad",
         "color_modal_backdrop": "", "color_success": "#2e7d32", "color_text": "#1d2330",
         "dim_border_radius": "6px", "dim_font_size": "16px", "dim_spacing_size": "16px",
         "font_family_body": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
         "font_family_heading": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"}
