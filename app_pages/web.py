"""The web server's own part, beside Streamlit's (st.App routes and middleware, wired in dashboard.py): what a
script cannot do from a page, because it happens in HTTP before or outside any page run.

- A sign-in cookie that scripts cannot read: after signing in, the page hands the browser a one-time code
  (`handoff`, single use, a minute, bound to the client's address); the browser posts it to `/aio/session`, which
  answers with the session token as a Secure, HttpOnly, SameSite=Strict cookie for the session's lifetime. Streamlit
  sends that cookie with the websocket's handshake, so a reload or a bookmark finds the session again
  (`st.context.cookies`); the store keeps only the token's hash. `/aio/signout` clears it.
- No upload before sign-in: Streamlit takes uploads for any live session over HTTP; `UploadGate` refuses them unless
  the page has marked that session as signed in by a role that may upload (`allow_uploads`), and refuses a body
  over AIO_UPLOAD_MB, which is also set as Streamlit's own per-file ceiling at start (`check_server`).
- `AIO_AUTH=off` only on a loopback address: the server refuses to start otherwise.

Everything here is process-local (one Streamlit server is one process), guarded by one lock.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from aio_core.settings import Settings

COOKIE = "aio_session"
HANDOFF_SECONDS = 60
_LOCK = threading.Lock()
_HANDOFFS: dict[str, tuple[str, str, float, int]] = {}  # sha256(code): (token, client, expires, cookie max-age)
_UPLOADERS: dict[str, float] = {}  # Streamlit session id: when the page last allowed it
_MULTIPART_MARGIN = 1 << 20  # a multipart body is a little larger than the file it carries


def loopback(address: str | None) -> bool:
    """Whether a listening address is this machine only (an empty address listens on every interface)."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def client_of(ip: str | None, headers: Mapping[str, str]) -> str:
    """Where a request comes from, for throttling and for binding a handoff: the peer's address; behind a proxy
    on this machine (the peer is loopback), the address that proxy appended to X-Forwarded-For."""
    if ip is None or loopback(ip):
        forwarded = next((v for k, v in headers.items() if k.lower() == "x-forwarded-for"), "")
        return forwarded.split(",")[-1].strip()[:90] or "local"
    return ip[:90]


def handoff(token: str, client: str, max_age: int) -> str:
    """A one-time code the browser exchanges at `/aio/session` for a cookie holding `token`."""
    code = secrets.token_urlsafe(24)
    with _LOCK:
        now = time.monotonic()
        for key in [k for k, (_, _, expires, _) in _HANDOFFS.items() if expires < now]:
            del _HANDOFFS[key]
        _HANDOFFS[_digest(code)] = (token, client, now + HANDOFF_SECONDS, max_age)
    return code


def handoff_pending(code: str) -> bool:
    with _LOCK:
        found = _HANDOFFS.get(_digest(code))
        return found is not None and found[2] >= time.monotonic()


def _take(code: str, client: str) -> tuple[str, int] | None:
    with _LOCK:
        found = _HANDOFFS.pop(_digest(code), None)
    if found is None or found[2] < time.monotonic() or found[1] != client:
        return None
    return found[0], found[3]


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def allow_uploads(session_id: str | None, allowed: bool) -> None:
    """Called by every page run: whether this Streamlit session is signed in by a role that may upload."""
    if not session_id:
        return
    with _LOCK:
        if allowed:
            _UPLOADERS[session_id] = time.monotonic()
            if len(_UPLOADERS) > 10_000:  # sessions long gone: forget the oldest
                for key in sorted(_UPLOADERS, key=_UPLOADERS.get)[:1000]:
                    del _UPLOADERS[key]
        else:
            _UPLOADERS.pop(session_id, None)


def _may_upload(session_id: str) -> bool:
    with _LOCK:
        return session_id in _UPLOADERS


def base_path() -> str:
    """The URL path the app is served under (Streamlit's server.baseUrlPath), '' at the root."""
    from streamlit import config

    base = (config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def _client(request: Request) -> str:
    return client_of(request.client.host if request.client else None, request.headers)


async def _claim(request: Request) -> Response:
    code = (await request.body())[:200].decode("ascii", "replace")
    found = _take(code, _client(request))
    if found is None:
        return Response(status_code=403)
    token, max_age = found
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, token, max_age=max_age, path=base_path() or "/", secure=True, httponly=True,
                        samesite="strict")
    return response


async def _clear(request: Request) -> Response:
    if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
        return Response(status_code=403)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE, path=base_path() or "/", secure=True, httponly=True, samesite="strict")
    return response


class UploadGate:
    """Refuse Streamlit uploads (PUT .../_stcore/upload_file/<session>/<file>) from sessions not signed in by a
    role that may upload, and bodies larger than AIO_UPLOAD_MB allows, before a byte is read."""

    def __init__(self, app: Any, upload_mb: int | None = None) -> None:
        self.app = app
        self.limit = (upload_mb if upload_mb is not None else Settings.from_env().upload_mb) * 2**20

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "PUT":
            parts = scope.get("path", "").split("/")
            if "upload_file" in parts[:-2]:
                session_id = parts[parts.index("upload_file") + 1]
                length = dict(scope.get("headers") or []).get(b"content-length", b"0")
                status = 403 if not _may_upload(session_id) else \
                    413 if length.isdigit() and int(length) > self.limit + _MULTIPART_MARGIN else None
                if status is not None:
                    await Response(status_code=status)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def check_server(settings: Settings | None = None) -> None:
    """At start, before serving anything: refuse `AIO_AUTH=off` on an address other machines can reach, and make
    Streamlit's own upload ceiling the page's (AIO_UPLOAD_MB)."""
    from streamlit import config

    settings = settings or Settings.from_env()
    address = config.get_option("server.address")
    if settings.auth == "off" and not loopback(address):
        raise SystemExit(f"AIO_AUTH=off serves every page without sign-in, so it starts only on a loopback address "
                         f"(localhost); the server would listen on {address or 'every interface'}: set "
                         "server.address to localhost, or set AIO_AUTH=local.")
    config.set_option("server.maxUploadSize", settings.upload_mb, where_defined="AIO_UPLOAD_MB")


def routes() -> list[Route]:
    base = base_path()
    return [Route(f"{base}/aio/session", _claim, methods=["POST"]),
            Route(f"{base}/aio/signout", _clear, methods=["POST"])]


MIDDLEWARE = [Middleware(UploadGate)]
