"""URLconf of the DOT interop server: the toolkit under ``/o/``, its metadata at the root.

``/o/`` is the mount point the toolkit's documentation uses, so the issuer is
``http://127.0.0.1:<port>/o``. The metadata routes are mounted a second time at the root
so that the RFC 8414 path-component URL of that issuer
(``/.well-known/oauth-authorization-server/o``) answers, as strict clients look there.
"""

from __future__ import annotations

from django.urls import include, path
from oauth2_provider import urls as oauth2_urls

urlpatterns = [
    path("o/", include(oauth2_urls)),
    path("", include((oauth2_urls.metadata_urlpatterns, "dot_root_metadata"))),
]
