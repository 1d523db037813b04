"""The Django settings of the DOT interop server, applied in-process with ``configure``.

Only what django-oauth-toolkit needs: ``auth`` and ``contenttypes`` (its models point at
users), the toolkit itself, a SQLite file, and the ``OAUTH2_PROVIDER`` block. No
middleware: the token, revocation and introspection views are CSRF-exempt and need no
session.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

SCOPES = {
    "orders:read": "Read orders",
    "orders:write": "Write orders",
    # DOT's IntrospectTokenView accepts a bearer token only if it carries this scope.
    "introspection": "Introspect tokens",
}
DEFAULT_SCOPES = ["orders:read"]
ACCESS_TOKEN_TTL = 300  # seconds, like the oidc-provider interop server


def django_settings(database: Path) -> dict[str, Any]:
    """Keyword arguments for ``django.conf.settings.configure``."""
    return {
        "DEBUG": False,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": ["127.0.0.1"],
        "ROOT_URLCONF": "tests.interop.dot.urls",
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "oauth2_provider",
        ],
        "MIDDLEWARE": [],
        "DATABASES": {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)},
        },
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "USE_TZ": True,
        # Leave the test session's logging and warnings configuration alone.
        "LOGGING_CONFIG": None,
        # DOT stores client secrets hashed with the first hasher. Django's default,
        # PBKDF2 at a million rounds, costs about half a second per client
        # authentication; the MD5 hasher (Django's advice for test suites) keeps the
        # same hash-and-check code path at a negligible cost.
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "OAUTH2_PROVIDER": {
            "SCOPES": SCOPES,
            "DEFAULT_SCOPES": DEFAULT_SCOPES,
            "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TOKEN_TTL,
        },
    }
