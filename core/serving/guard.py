"""The service's front door: the bearer token (when one is set), then the body size limit."""

from __future__ import annotations

import hmac

from fastapi.responses import JSONResponse


def authorized(headers: list[tuple[bytes, bytes]], token: str | None) -> bool:
    """Whether ASGI ``headers`` carry ``Authorization: Bearer <token>`` (always, without one)."""
    if token is None:
        return True
    for name, value in headers:
        if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            return hmac.compare_digest(value[7:].strip(), token.encode())
    return False


class Guard:
    """ASGI middleware in front of every route: the bearer token (when set), then the body limit.

    The body is read here, up to the limit, so neither a long Content-Length nor a chunked stream
    can make a route buffer more than ``max_body_bytes``.
    """

    def __init__(self, app, *, token: str | None, max_body_bytes: int):
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message):
            if message["type"] == "http.response.start":  # never let a browser read JSON as HTML
                headers = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
                message["headers"] = headers
            await send(message)

        if scope["path"] != "/health" and not authorized(scope["headers"], self.token):
            reply = JSONResponse(
                {
                    "detail": "Missing or wrong API token: send the header "
                    "'Authorization: Bearer <token>' with the server's "
                    "FINTUNE_API_TOKEN."
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await reply(scope, receive, send_nosniff)
            return
        too_large = JSONResponse(
            {
                "detail": f"The request body is over {self.max_body_bytes:,} "
                "bytes: send fewer rows per request."
            },
            status_code=413,
        )
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await too_large(scope, receive, send_nosniff)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await too_large(scope, receive, send_nosniff)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                # After the body: wait for the disconnect, as the server would.
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_nosniff)
