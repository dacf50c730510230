"""The standard rich error model (google.rpc, AIP-193) for greet's validation errors.

A request that breaks a limit is answered with its status and message and, in the trailer
`grpc-status-details-bin`, a serialized `google.rpc.Status` (code, message, details) holding:

- `google.rpc.BadRequest`: one field violation naming the field (`name`, `names[3]`, `names`;
  `requests` for a client's message stream), with the message as its description and the reason;
- `google.rpc.ErrorInfo`: the reason (`NAME_TOO_LONG`, `TOO_MANY_NAMES`, `TOO_MANY_MESSAGES`),
  the domain, which is the full name of the service that refused the request
  (`inventory.v1.InventoryService`; GreetService's is greet.service.ERROR_DOMAIN, as the reasons
  are unique within a service), and metadata `limit`, `actual` and `flag` (the server flag that
  sets the limit).

This module builds the details; grpclib's ProtoStatusDetailsCodec packs them into the Status (the
server uses it whenever googleapis-common-protos is installed, a dependency of greet). grpcio's
`grpc_status.rpc_status.from_call` and grpc-go's `status.FromError(err).Details()` read them, and
so does greet's client (`greet.errors.RpcError.details`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo

if TYPE_CHECKING:
    from greet.errors import Violation

__all__ = ["status_details"]


def status_details(violation: Violation, message: str, domain: str) -> tuple[Message, ...]:
    """The details of the google.rpc.Status that reports `violation` (described by `message`)
    for the service `domain` (its full name, `package.Service`)."""
    bad_request = BadRequest(
        field_violations=[
            BadRequest.FieldViolation(
                field=violation.field, description=message, reason=violation.reason
            )
        ]
    )
    error_info = ErrorInfo(
        reason=violation.reason,
        domain=domain,
        metadata={
            "limit": str(violation.limit),
            "actual": str(violation.actual),
            "flag": violation.setting,
        },
    )
    return bad_request, error_info
