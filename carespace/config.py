"""Configuration from CARESPACE_* environment variables, with secrets kept in the instance folder."""
from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_MAIL_FROM = "CareSpace <no-reply@localhost>"


def instance_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("CARESPACE_INSTANCE_DIR") or "./instance").resolve()


def _secret(folder: Path, name: str, nbytes: int = 32) -> str:
    """Read a secret from the instance folder, creating it (mode 0600) on first use."""
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A non-negative number of seconds from the environment, or a clear error naming the variable."""
    raw = env.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ValueError(f"{name} must be on or off, not {raw!r}")


def _megabytes(env: Mapping[str, str], name: str, default: float) -> int:
    """A positive size in megabytes from the environment, as bytes."""
    raw = env.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number of megabytes, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be more than 0")
    return int(value * 1024 * 1024)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None


def load(test_config: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Resolve the settings documented in README.md; test_config overrides everything."""
    env = os.environ if env is None else env
    overrides = dict(test_config or {})
    folder = Path(overrides.get("INSTANCE_DIR") or instance_dir(env)).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    cfg: dict[str, Any] = {
        "INSTANCE_DIR": str(folder),
        "DATABASE_URL": env.get("CARESPACE_DATABASE_URL") or f"sqlite:///{folder / 'carespace.db'}",
        "DATABASE_REPLICA_URL": env.get("CARESPACE_DATABASE_REPLICA_URL") or None,
        "REPLICA_RETRY_S": _seconds(env, "CARESPACE_REPLICA_RETRY_S", 5.0),
        "BASE_URL": (env.get("CARESPACE_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
        "SMTP_URL": env.get("CARESPACE_SMTP_URL") or None,
        "MAIL_FROM": env.get("CARESPACE_MAIL_FROM") or DEFAULT_MAIL_FROM,
        "SECRET_KEY": env.get("CARESPACE_SECRET_KEY") or None,
        "MAX_CONTENT_LENGTH": None,
        "TOKEN_CACHE_SECONDS": _seconds(env, "CARESPACE_TOKEN_CACHE_SECONDS", 5.0),
        "FHIR_READ_FAST_PATH": _flag(env, "CARESPACE_FHIR_READ_FAST_PATH", True),
        "DYNAMIC_CLIENT_REGISTRATION": _flag(env, "CARESPACE_DYNAMIC_CLIENT_REGISTRATION", True),
        "CLOCK_OFFSET_S": _seconds(env, "CARESPACE_CLOCK_OFFSET_S", 0.0),
        "PORTAL_RESOURCES_JSON": env.get("CARESPACE_PORTAL_RESOURCES") or None,
        **{key: _int(env, f"CARESPACE_{key}", default) for key, default in (
            ("SEND_RECORD_TTL_DAYS", 30), ("SEND_RECORD_LIMIT_PER_IP", 60), ("SEND_RECORD_LIMIT_WINDOW_S", 900),
            ("SEND_RECORD_LIMIT_PER_RECORD", 30), ("SHARE_LINK_PASSCODE_ATTEMPTS", 10), ("SHARE_LINK_FILE_TTL_S", 300),
            ("SHARE_LINK_LIMIT_PER_IP", 120))},
        "SHARE_LINK_SERVER_KEY": env.get("CARESPACE_SHARE_LINK_SERVER_KEY") or None,
        **{key: _int(env, f"CARESPACE_{key}", default) for key, default in (
            ("OAUTH_TOKEN_FAILURES_PER_IP", 30), ("OAUTH_TOKEN_FAILURES_PER_CLIENT", 100),
            ("OAUTH_REGISTER_LIMIT_PER_IP", 20))},
        "JWKS_TIMEOUT_S": _seconds(env, "CARESPACE_JWKS_TIMEOUT_S", 2.0),
        "JWKS_FAILURE_CACHE_S": _seconds(env, "CARESPACE_JWKS_FAILURE_CACHE_S", 60.0),
        "NOTIFY_WINDOW_S": _seconds(env, "CARESPACE_NOTIFY_WINDOW_S", 300.0),
        "PRACTICE_EMAIL": (env.get("CARESPACE_PRACTICE_EMAIL") or "").strip() or None,
        "STAFF_REQUIRE_2FA": _flag(env, "CARESPACE_STAFF_REQUIRE_2FA", False),
        "UPLOAD_MAX_BYTES": _megabytes(env, "CARESPACE_UPLOAD_MAX_MB", 20),
        # Bulk Data $export (README, "Bulk Data export")
        "EXPORT_RETENTION_S": _seconds(env, "CARESPACE_EXPORT_RETENTION_HOURS", 24.0) * 3600,
        "EXPORT_FILE_MAX_BYTES": _megabytes(env, "CARESPACE_EXPORT_FILE_MAX_MB", 100),
        "EXPORT_MIN_POLL_S": _seconds(env, "CARESPACE_EXPORT_MIN_POLL_S", 0.2),
        "EXPORT_MAX_JOBS": _int(env, "CARESPACE_EXPORT_MAX_JOBS", 2),
        "EXPORT_LEASE_S": _seconds(env, "CARESPACE_EXPORT_LEASE_S", 30.0),
        "EXPORT_WORKER": _flag(env, "CARESPACE_EXPORT_WORKER", True),
    }
    cfg.update(overrides)
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _secret(folder, "secret_key")
    if not cfg["SHARE_LINK_SERVER_KEY"]:  # seals the keys of long-term share links (flag L), never shown
        cfg["SHARE_LINK_SERVER_KEY"] = _secret(folder, "share_link_key")
    cfg["BASE_URL"] = str(cfg["BASE_URL"]).rstrip("/")
    if cfg["DATABASE_REPLICA_URL"] and not all(
            str(cfg[k]).startswith("postgresql") for k in ("DATABASE_URL", "DATABASE_REPLICA_URL")):
        raise ValueError("CARESPACE_DATABASE_REPLICA_URL needs PostgreSQL: a postgresql:// streaming replica of a "
                         "postgresql:// CARESPACE_DATABASE_URL")
    cfg["FHIR_BASE_URL"] = cfg["BASE_URL"] + "/fhir"
    return cfg
