"""`carespace decrypt-record FILE --password P`: open a record sent with Send Record (a JWE) offline."""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

from .cli import CommandError


def _decrypt(args: argparse.Namespace) -> int:
    from bundles import crypto
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.file}: {exc.__class__.__name__}") from None
    password = args.password if args.password is not None else getpass.getpass("Password: ")
    try:
        plain = crypto.decrypt(text.strip(), password)
    except crypto.WrongPassword:
        raise CommandError("wrong password (or the record was altered)") from None
    except crypto.JweError as exc:
        raise CommandError(f"{args.file} is not a record sent with Send Record: {exc}") from None
    try:
        bundle = json.loads(plain)
    except ValueError:
        raise CommandError("the decrypted record is not JSON") from None
    out = json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("decrypt-record", help="decrypt a record sent with Send Record and print the FHIR Bundle")
    p.add_argument("file", metavar="FILE", help="the encrypted record (JWE compact text); - reads standard input")
    p.add_argument("--password", help="the password the patient gave you (prompted for when omitted)")
    p.add_argument("--output", "-o", metavar="PATH", help="write the Bundle to PATH instead of standard output")
    p.set_defaults(func=_decrypt)
