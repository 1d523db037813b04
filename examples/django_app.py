"""A Django + Django REST framework API protected by tokenguard, in one file.

    tokenguard dev-server --port 9000     # in another terminal; paste the lines it prints:
                                          # they export TOKENGUARD_CLIENT_ID and _SECRET, set $JWT
    waitress-serve --port 8000 examples.django_app:application
    curl -H "Authorization: Bearer $JWT" http://127.0.0.1:8000/orders

TOKENGUARD_ISSUER, TOKENGUARD_AUDIENCE and TOKENGUARD_RESOURCE default to the dev
server, its tokens' audience and this app's address.
"""

import os

import django
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import JsonResponse
from django.urls import path

settings.configure(
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "change-me"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    MIDDLEWARE=[],
    DATABASES={},  # no database: request.user is built from the token
    TOKENGUARD={  # the mapping TokenGuard.from_config takes
        "issuers": [
            {
                "issuer": os.environ.get("TOKENGUARD_ISSUER", "http://127.0.0.1:9000"),
                "allow_insecure_http": True,  # only for a loopback dev server
                "client_auth": {
                    "method": "client_secret_basic",
                    "client_id": os.environ["TOKENGUARD_CLIENT_ID"],
                    "client_secret_env": "TOKENGUARD_CLIENT_SECRET",
                },
            }
        ],
        "policies": [
            {"name": "orders", "audience": os.environ.get("TOKENGUARD_AUDIENCE", "urn:test:api")}
        ],
    },
    TOKENGUARD_REALM="orders",
    TOKENGUARD_RESOURCE=os.environ.get("TOKENGUARD_RESOURCE", "http://127.0.0.1:8000"),  # RFC 9728
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": ["tokenguard.django.TokenGuardAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["tokenguard.django.HasScopes"],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    },
)
django.setup()

from rest_framework.response import Response  # noqa: E402  (after settings)
from rest_framework.views import APIView  # noqa: E402

from tokenguard.django import metadata_urls, token_required  # noqa: E402


def public(request):
    return JsonResponse({"public": True})


class Orders(APIView):
    required_scopes = ("orders:read",)

    def get(self, request):
        return Response({"subject": request.user.username, "scopes": sorted(request.auth.scopes)})


class CancelOrder(APIView):
    required_scopes = ("orders:write",)
    tokenguard_acr_values = ("mfa",)  # RFC 9470 step-up: a recent MFA login
    tokenguard_max_age = 300

    def delete(self, request, order_id):
        return Response({"cancelled": order_id, "by": request.user.username})


@token_required("orders", scopes=["orders:read"])
async def report(request):  # plain Django, async
    return JsonResponse({"subject": request.auth.subject})


urlpatterns = [
    path("public", public),
    path("orders", Orders.as_view()),
    path("orders/<int:order_id>", CancelOrder.as_view()),
    path("report", report),
    *metadata_urls(),  # /.well-known/oauth-protected-resource
]
application = get_wsgi_application()
