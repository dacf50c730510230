"""The browsers' protocols on the wire (greet.transport._web uses them): which protocol a
content-type names, proto3 JSON messages, Connect's error codes, HTTP statuses and error details,
envelopes, gRPC-Web trailer blocks and base64 text, and CORS."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any, cast

import betterproto
from betterproto import PLACEHOLDER
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc.status_pb2 import Status as RpcStatus
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.metadata import decode_grpc_message, encode_grpc_message

from greet._codec import build, is_simple
from greet.transport._engine import Header

__all__ = [
    "CONNECT_CODES",
    "CONNECT_HTTP_STATUS",
    "JSON_CODEC",
    "RESPONSE_FIELDS",
    "Cors",
    "JsonCodec",
    "WebKind",
    "classify",
    "classify_header",
    "connect_error",
    "decode_base64_pieces",
    "dumps",
    "envelope",
    "quote",
    "read_trailers",
    "unpadded",
]


# -- protocols ----------


@dataclass(frozen=True, slots=True, eq=False)
class WebKind:
    """One request content-type's protocol (the six below; compared and hashed by identity, as
    a key of the server's route cache)."""

    name: str  # the metrics label: "connect" or "grpc-web"
    enveloped: bool  # messages framed (Connect streaming, gRPC-Web); else one bare message
    json: bool
    text: bool  # gRPC-Web text: base64 both ways
    content_type: bytes  # the response's


CONNECT_JSON = WebKind("connect", False, True, False, b"application/json")
CONNECT_PROTO = WebKind("connect", False, False, False, b"application/proto")
CONNECT_STREAM_JSON = WebKind("connect", True, True, False, b"application/connect+json")
CONNECT_STREAM_PROTO = WebKind("connect", True, False, False, b"application/connect+proto")
GRPC_WEB = WebKind("grpc-web", True, False, False, b"application/grpc-web+proto")
GRPC_WEB_TEXT = WebKind("grpc-web", True, False, True, b"application/grpc-web-text+proto")

KINDS = {
    "application/json": CONNECT_JSON,
    "application/proto": CONNECT_PROTO,
    "application/connect+json": CONNECT_STREAM_JSON,
    "application/connect+proto": CONNECT_STREAM_PROTO,
    "application/grpc-web": GRPC_WEB,
    "application/grpc-web+proto": GRPC_WEB,
    "application/grpc-web-text": GRPC_WEB_TEXT,
    "application/grpc-web-text+proto": GRPC_WEB_TEXT,
}


def classify(content_type: str | None) -> WebKind | None:
    """The protocol of a request content-type (parameters such as charset aside)."""
    if not content_type:
        return None
    return KINDS.get(content_type.partition(";")[0].strip().lower())


KINDS_SEEN: dict[bytes, WebKind | None] = {}
KINDS_SEEN_MAX = 64  # distinct content-type values remembered (then forgotten all at once)


def classify_header(content_type: bytes | None) -> WebKind | None:
    """`classify` of a content-type header as it came, remembered per value."""
    if content_type is None:
        return None
    try:
        return KINDS_SEEN[content_type]
    except KeyError:
        pass
    kind = classify(content_type.decode("latin-1"))
    if len(KINDS_SEEN) >= KINDS_SEEN_MAX:
        KINDS_SEEN.clear()
    KINDS_SEEN[content_type] = kind
    return kind


# -- JSON ----------


class JsonCodec(CodecBase):
    """Messages as proto3 JSON (lowerCamelCase names, defaults omitted), by the message's own
    library; what does not parse is INVALID_ARGUMENT.

    betterproto's `to_dict` and `from_dict` cost tens of microseconds even for a one-field
    message (each field's type hints, casing and default are looked up again on every call). So
    for a class whose fields are all strings, bools or 32-bit integers (repeated or not; no
    `optional`, no oneof: `JsonPlan`), what betterproto works out per field (its JSON name, its
    default) is worked out once, by betterproto, and kept; such values are their own JSON, so a
    message is written and read without betterproto's per-call machinery. Anything else (another
    class, a value of another type, a key that is not a field's name) goes to `to_dict` and
    `from_dict` as before, so the result is always theirs."""

    __content_subtype__ = "json"

    def encode(self, message: Any, message_type: Any) -> bytes:
        plan = json_plan(type(message))
        if plan is not None:
            text = plan.encode(message)
            if text is not None:
                return text
        if isinstance(message, betterproto.Message):
            return json.dumps(message.to_dict(), separators=(",", ":")).encode()
        return json_format.MessageToJson(message, indent=None).encode()

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            if data == b"{}":
                value = {}
            elif data[:1] == b"{":  # (no BOM, no UTF-16 or 32 to detect)
                value = JSON_DECODER.decode(data.decode())
            else:
                value = json.loads(data) if data.strip() else {}
        except (ValueError, UnicodeDecodeError) as error:
            raise GRPCError(Status.INVALID_ARGUMENT, f"the request is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise GRPCError(
                Status.INVALID_ARGUMENT, "the request must be a JSON object (proto3 JSON mapping)"
            )
        plan = json_plan(message_type)
        if plan is not None:
            message = plan.from_dict(value)
            if message is not None:
                return message
        try:
            if issubclass(message_type, betterproto.Message):
                return message_type().from_dict(value)
            return json_format.ParseDict(value, message_type())
        except Exception as error:  # what each library raises for a wrong value varies
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"the request does not fit {message_type.__name__}: {error}",
            ) from None


INT32_RANGES = {
    betterproto.TYPE_INT32: (-(2**31), 2**31),
    betterproto.TYPE_SINT32: (-(2**31), 2**31),
    betterproto.TYPE_SFIXED32: (-(2**31), 2**31),
    betterproto.TYPE_UINT32: (0, 2**32),
    betterproto.TYPE_FIXED32: (0, 2**32),
}
"""Integer types whose proto3 JSON value is the number itself (64-bit ones are strings)."""


JSON_DECODER = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class JsonField:
    name: str  # the attribute (and proto) name
    json_name: str  # as betterproto's to_dict writes it
    key: str  # json_name as JSON text, and the colon
    kind: type  # str, bool or int
    low: int
    high: int
    repeated: bool
    default: Any  # betterproto's default value for the field


class JsonPlan:
    """What betterproto's to_dict and from_dict look up for each field of a class, looked up
    once (see JsonCodec)."""

    __slots__ = ("by_key", "cls", "fields")

    def __init__(self, cls: type[betterproto.Message], fields: list[JsonField]) -> None:
        self.cls = cls
        self.fields = fields
        self.by_key: dict[str, JsonField] = {}
        for field in fields:
            self.by_key[field.name] = field
            self.by_key[field.json_name] = field

    def encode(self, message: betterproto.Message) -> bytes | None:
        """`json.dumps(message.to_dict(), separators=(",", ":")).encode()`, or None where the
        plan does not cover a value: each value is written by the json module's own string
        encoder (or is a bool or an int), in to_dict's order."""
        state = object.__getattribute__(message, "__dict__")
        parts: list[str] = []
        for field in self.fields:
            value = state.get(field.name, PLACEHOLDER)
            if value is PLACEHOLDER:
                continue  # never set: the default, which to_dict leaves out
            if field.repeated:
                if type(value) is not list:
                    return None
                if not value:
                    continue
                items = []
                for item in value:
                    text = json_text(field, item)
                    if text is None:
                        return None
                    items.append(text)
                parts.append(field.key + "[" + ",".join(items) + "]")
            else:
                text = json_text(field, value)
                if text is None:
                    return None
                if value != field.default:
                    parts.append(field.key + text)
        return ("{" + ",".join(parts) + "}").encode()

    def from_dict(self, value: dict[str, Any]) -> betterproto.Message | None:
        """`cls().from_dict(value)`, or None where the plan does not cover a value."""
        fields: dict[str, Any] = {}
        by_key = self.by_key
        for key, item in value.items():
            field = by_key.get(key)
            if field is None or field.name in fields:
                return None
            if field.repeated:
                if type(item) is not list or not all(fits(field, each) for each in item):
                    return None
                item = list(item)
            elif not fits(field, item):
                return None
            fields[field.name] = item
        message = build(self.cls, **fields)
        object.__getattribute__(message, "__dict__")["_serialized_on_wire"] = True
        return message


def json_text(field: JsonField, value: Any) -> str | None:
    """`value` as json.dumps writes it, or None if it does not fit `field`."""
    kind = type(value)
    if kind is not field.kind:
        return None
    if kind is str:
        return encode_basestring_ascii(value)  # json.dumps's own (ensure_ascii)
    if kind is bool:
        return "true" if value else "false"
    if field.low <= value < field.high:
        return int.__repr__(value)
    return None


def fits(field: JsonField, value: Any) -> bool:
    """Whether `value` is its own proto3 JSON for `field` (and the reverse)."""
    kind = type(value)
    if kind is not field.kind:
        return False
    return kind is not int or field.low <= value < field.high


_json_plans: dict[type, JsonPlan | None] = {}
_UNPLANNED = object()


def json_plan(cls: Any) -> JsonPlan | None:
    """The class's JsonPlan, made once; None for a class it does not cover."""
    plan: JsonPlan | object | None = _json_plans.get(cls, _UNPLANNED)
    if plan is _UNPLANNED:
        plan = _json_plans[cls] = make_json_plan(cls)
    return cast("JsonPlan | None", plan)


def make_json_plan(cls: Any) -> JsonPlan | None:
    if not (isinstance(cls, type) and issubclass(cls, betterproto.Message) and is_simple(cls)):
        return None
    meta = cls._betterproto  # type: ignore[arg-type]  # betterproto's classproperty
    fields = []
    for name, field_meta in meta.meta_by_field_name.items():
        if field_meta.optional or field_meta.group is not None:
            return None
        proto_type = field_meta.proto_type
        low = high = 0
        if proto_type == betterproto.TYPE_STRING:
            kind: type = str
        elif proto_type == betterproto.TYPE_BOOL:
            kind = bool
        elif proto_type in INT32_RANGES:
            kind = int
            low, high = INT32_RANGES[proto_type]
        else:
            return None
        default = meta.default_gen[name]()
        repeated = type(default) is list
        json_name = betterproto.Casing.CAMEL(name).rstrip("_")  # as to_dict names it
        key = encode_basestring_ascii(json_name) + ":"
        fields.append(JsonField(name, json_name, key, kind, low, high, repeated, default))
    return JsonPlan(cls, fields)


JSON_CODEC = JsonCodec()


# -- errors ----------

CONNECT_CODES: dict[Status, str] = {
    status: "canceled" if status is Status.CANCELLED else status.name.lower()
    for status in Status
    if status is not Status.OK
}
"""Connect's code name of each gRPC status."""

CONNECT_HTTP_STATUS = {
    Status.CANCELLED: 499,
    Status.UNKNOWN: 500,
    Status.INVALID_ARGUMENT: 400,
    Status.DEADLINE_EXCEEDED: 504,
    Status.NOT_FOUND: 404,
    Status.ALREADY_EXISTS: 409,
    Status.PERMISSION_DENIED: 403,
    Status.RESOURCE_EXHAUSTED: 429,
    Status.FAILED_PRECONDITION: 400,
    Status.ABORTED: 409,
    Status.OUT_OF_RANGE: 400,
    Status.UNIMPLEMENTED: 501,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
    Status.DATA_LOSS: 500,
    Status.UNAUTHENTICATED: 401,
}
"""The HTTP status of a Connect unary error (connectrpc.com/docs/protocol, error codes)."""


def unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def connect_details(details_bin: bytes | None) -> list[dict[str, Any]]:
    """A serialized google.rpc.Status's details as Connect error details."""
    if not details_bin:
        return []
    status = RpcStatus()
    try:
        status.ParseFromString(details_bin)
    except DecodeError:
        return []
    details: list[dict[str, Any]] = []
    for detail in status.details:
        entry: dict[str, Any] = {
            "type": detail.type_url.rpartition("/")[2],
            "value": unpadded(detail.value),
        }
        try:
            debug = json_format.MessageToDict(detail)
        except (TypeError, KeyError):  # a type the descriptor pool does not know
            pass
        else:
            debug.pop("@type", None)
            entry["debug"] = debug
        details.append(entry)
    return details


def connect_error(status: Status, message: str | None, details_bin: bytes | None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": CONNECT_CODES[status]}
    if message:
        error["message"] = message
    details = connect_details(details_bin)
    if details:
        error["details"] = details
    return error


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# -- CORS ----------

ALLOW_METHODS = b"POST, GET, OPTIONS"
ALLOW_HEADERS = (
    b"content-type, connect-protocol-version, connect-timeout-ms, x-grpc-web, x-user-agent, "
    b"authorization, grpc-timeout"
)
EXPOSE_HEADERS = (
    b"grpc-status, grpc-message, grpc-status-details-bin, connect-protocol-version, "
    b"connect-content-encoding, content-encoding"
)
PREFLIGHT_MAX_AGE = b"7200"


class Cors:
    """Which origins may call from a browser (`--cors-allow-origin`; `*` for any)."""

    __slots__ = ("any", "origins")

    def __init__(self, origins: Iterable[str]) -> None:
        names = {origin.strip().rstrip("/") for origin in origins if origin.strip()}
        self.any = "*" in names
        self.origins = frozenset(name.encode("latin-1").lower() for name in names - {"*"})

    def allowed(self, origin: bytes | None) -> bool:
        return origin is not None and (self.any or origin.lower() in self.origins)

    def response_headers(self, origin: bytes | None) -> list[Header]:
        """What an actual (not preflight) response adds for `origin`."""
        if origin is None or not self.allowed(origin):
            return []
        return [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]

    def preflight(self, origin: bytes | None) -> tuple[int, list[Header]]:
        """The answer to an OPTIONS request: 204 with the allow headers, or 403 without them."""
        if origin is None or not self.allowed(origin):
            return 403, [(b"vary", b"Origin")]
        return 204, [
            (b"access-control-allow-origin", origin),
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", PREFLIGHT_MAX_AGE),
            (b"vary", b"Origin"),
        ]


def quote(message: str) -> bytes:
    return encode_grpc_message(message).encode()


def envelope(flags: int, data: bytes) -> bytes:
    return bytes((flags,)) + len(data).to_bytes(4, "big") + data


RESPONSE_FIELDS = frozenset({b"content-type", b"grpc-accept-encoding", b"grpc-encoding"})


def read_trailers(
    headers: list[Header],
) -> tuple[Status, str | None, bytes | None, list[Header]]:
    """A ServerCall's trailer block: status, message, status details and the metadata."""
    status = Status.UNKNOWN
    message = None
    details = None
    metadata = []
    for name, value in headers:
        if name == b"grpc-status":
            status = Status(int(value))
        elif name == b"grpc-message":
            message = decode_grpc_message(value.decode("ascii"))
        elif name == b"grpc-status-details-bin":
            details = base64.b64decode(value + b"==")
        elif name[:1] != b":" and name not in RESPONSE_FIELDS:
            metadata.append((name, value))
    return status, message, details, metadata


def decode_base64_pieces(data: bytes) -> bytes:
    """Base64 made of whole 4-character groups, where padding may end any group (each message
    of a gRPC-Web text stream may be encoded on its own)."""
    pieces = []
    start = 0
    pad = data.find(b"=")
    while pad != -1:
        end = (pad // 4 + 1) * 4
        pieces.append(base64.b64decode(data[start:end], validate=True))
        start = end
        pad = data.find(b"=", end)
    pieces.append(base64.b64decode(data[start:], validate=True))
    return b"".join(pieces)
