"""`carespace register-client`: register a SMART app or backend service and print its credentials."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .cli import CommandError


def _register(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from smart_auth.oauth.service import OAuthDomainError, register_client

    from . import create_app, db
    kinds = [k for k, on in (("public", args.public), ("secret", args.secret), ("jwks", bool(args.jwks_uri)),
                             ("jwks", bool(args.jwks_file))) if on]
    if len(kinds) > 1:
        raise CommandError("choose one of --public, --secret, --jwks-uri and --jwks-file")
    kind = kinds[0] if kinds else "public"
    jwks = None
    if args.jwks_file:
        try:
            jwks = Path(args.jwks_file).read_text()
        except OSError as exc:
            raise CommandError(f"cannot read {args.jwks_file}: {exc.strerror}") from None
    grants = ["client_credentials"] if args.grant_type == "client_credentials" else None
    app = create_app()
    engine = app.extensions["carespace.engine"]
    try:
        db.upgrade(engine)
        with app.extensions["carespace.write_sessions"]() as dbs:
            new = register_client(dbs, name=args.name, redirect_uris=args.redirect_uri or [], scope=args.scope or "",
                                  kind=kind, jwks=jwks, jwks_uri=args.jwks_uri, grant_types=grants,
                                  launch_uri=args.launch_uri)
            dbs.commit()
    except OAuthDomainError as exc:
        raise CommandError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise CommandError(f"cannot reach the database: {exc.__class__.__name__}") from None
    out = {"client_id": new.client_id, "name": new.row.name, "token_endpoint_auth_method": new.row.auth_method,
           "redirect_uris": args.redirect_uri or [], "scope": new.row.scope, "grant_types": new.row.grant_types.split()}
    if new.client_secret:
        out["client_secret"] = new.client_secret
    if args.launch_uri:
        out["launch_uri"] = args.launch_uri
    print(json.dumps(out, indent=2))
    return 0


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("register-client", help="register a SMART app or backend service; prints JSON")
    p.add_argument("--name", required=True, help="the app's name, shown to patients")
    p.add_argument("--redirect-uri", action="append", help="an exact redirect URI (repeatable)")
    p.add_argument("--scope", help="space-separated scopes the app may ask for (default: any SMART scope)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--public", action="store_true", help="a public app (PKCE, no secret; the default)")
    kind.add_argument("--secret", action="store_true", help="a confidential app with a client secret")
    kind.add_argument("--jwks-uri", help="an asymmetric client whose public keys are at this URL")
    kind.add_argument("--jwks-file", help="an asymmetric client whose public keys (JWKS JSON) are in this file")
    p.add_argument("--grant-type", choices=["authorization_code", "client_credentials"], default="authorization_code",
                   help="client_credentials for a backend service (SMART Backend Services)")
    p.add_argument("--launch-uri", help="the app's launch URL, for EHR launch from Connected apps")
    p.set_defaults(func=_register)
