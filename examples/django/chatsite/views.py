"""The page (login required) and a form post that publishes from an ordinary Django view."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from .realtime import realtime


@login_required
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "index.html")


@require_POST
@login_required
async def announce(request: HttpRequest) -> HttpResponse:
    """Publish to "news" from a view (CSRF-checked, signed-in users only): it runs in the
    same process and event loop as the hub."""
    text = request.POST.get("text", "")[:500]
    user = await request.auser()
    published = await realtime.hub.publish(
        "news", {"text": text, "by": user.get_username()})
    return JsonResponse({"offset": published.offset})
