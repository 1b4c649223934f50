"""The patient portal and practice console: views and templates over the other packages' services.

    blueprint.py   the portal blueprint and the layout variables of every page
    context.py     the per-request context: the viewer, their record and access, display names
    errors.py      app-wide error pages (installed by the composition root)
    views*.py      the patient's pages; labs, documents, messages, access_log shape FHIR data for them
    practice/      the practice console (console.py: its blueprint and staff context; views*.py: its pages)
"""
from __future__ import annotations

from flask import Flask

from . import views, views_health, views_messages  # noqa: F401 - their routes join the portal blueprint
from .blueprint import bp
from .errors import error_page, register_error_pages
from .practice import console, views_admin  # noqa: F401 - the console's routes
from .practice import views as practice_views

__all__ = ["error_page", "init_app", "register_error_pages"]


def init_app(app: Flask) -> None:
    """Register the portal and the console."""
    app.register_blueprint(bp)
    app.register_blueprint(console.bp)
    app.register_error_handler(413, practice_views.too_large)
