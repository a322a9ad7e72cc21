"""Writes over HTTP: the JSON body, read only once the caller is known, and idempotency keys.

A route that takes a body declares :data:`JsonBody` after its authentication dependency:
FastAPI would otherwise read and parse the body before any dependency runs, so a malformed
body without a token would be answered 422 instead of 401. The body's shape is documented
with :func:`documented_body` (the OpenAPI document still shows it, with examples).

A write that may be retried declares :data:`KeyHeader`; :func:`keyed_write` turns the
header into a :class:`models.idempotency.KeyedWrite` whose answer is built, and stored,
inside the write's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from email.message import Message
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, Response

from api.problems import MEDIA_TYPE
from api.tokens import Principal
from engine.errors import InvalidEvent
from models.idempotency import HEADER, MAX_LENGTH, Answer, KeyedWrite, parse_key, request_digest

JSON_MEDIA = "application/json"
KEY_DESCRIPTION = (
    f"Makes the write safe to retry: 1-{MAX_LENGTH} letters, digits or `. _ : ~ + / = -` "
    "(a UUID is ideal; a quoted string is read without its quotes). A retry with the same "
    "key and body is answered with the first answer (header `Idempotent-Replayed: true`) and "
    "changes nothing, a concurrent one waits for the first; the same key with another body "
    "is 422. Keys are kept at least 24 hours, per caller and route."
)
KeyHeader = Annotated[str | None, Header(alias=HEADER, description=KEY_DESCRIPTION)]


def _is_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def json_body(request: Request) -> Any:
    """The request's body parsed as JSON (RFC 8259: UTF-8, no NaN or Infinity).

    Raises:
        HTTPException: 415 when the body is declared as something other than JSON.
        InvalidEvent: on field ``body`` when it is not JSON.
    """
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise HTTPException(415, f"the body must be {JSON_MEDIA}, not {content_type[:60]!r}")
    raw = await request.body()  # at most the body limit (api.edge)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise InvalidEvent("body", "must be JSON in UTF-8") from None
    except RecursionError:
        raise InvalidEvent("body", "is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and numbers too long to be numbers
        raise InvalidEvent("body", f"is not valid JSON: {exc}") from None


JsonBody = Annotated[Any, Depends(json_body)]


async def optional_json_body(request: Request) -> Any:
    """:func:`json_body`, or None when the request has no body at all."""
    if not await request.body():
        return None
    return await json_body(request)


OptionalJsonBody = Annotated[Any, Depends(optional_json_body)]


def json_object(body: Any, field: str) -> dict[str, Any]:
    """The body as an object, or 422 naming ``field``."""
    if not isinstance(body, dict):
        raise InvalidEvent(field, "must be a JSON object")
    return body


def documented_body(examples: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``openapi_extra`` describing a required JSON object body with these examples."""
    schema = {"type": "object", "additionalProperties": True}
    content = {JSON_MEDIA: {"schema": schema, "examples": dict(examples)}}
    return {"requestBody": {"required": True, "content": content}}


def answer(
    status: int, content: Any, headers: Mapping[str, str] | None = None, problem: bool = False
) -> Answer:
    """An answer as it will be sent: the JSON text rendered once, so that a replay sends
    the very bytes the first answer did."""
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    media = MEDIA_TYPE if problem else JSON_MEDIA
    return Answer(status, body, {"Content-Type": media, **(headers or {})})


def send(answered: Answer, replayed: bool = False) -> Response:
    headers = dict(answered.headers)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(answered.body.encode("utf-8"), answered.status, headers)


def keyed_write(
    request: Request,
    who: Principal,
    raw_key: str | None,
    body: Any,
    respond: Callable[[Any], Answer],
) -> KeyedWrite | None:
    """The write's idempotency key, or None when the request has none.

    Raises:
        InvalidEvent: on field ``Idempotency-Key`` when the key is malformed.
    """
    if raw_key is None:
        return None
    key = parse_key(raw_key)
    template = getattr(request.scope.get("route"), "path", request.url.path)
    route = f"{request.method} {template}"
    digest = request_digest(request.method, template, request.path_params, body)
    return KeyedWrite(who.subject, route, key, digest, respond)


def keyed_answer(keyed: KeyedWrite | None, result: Any, respond: Callable[[Any], Answer]) -> Answer:
    """The answer the write gave: built in its transaction when it had a key."""
    if keyed is not None and keyed.answer is not None:
        return keyed.answer
    return respond(result)
