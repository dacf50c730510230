"""Health: `grpc.health.v1.Health` for "" (the whole server) and each service served, by its full
name (`greet_service.GreetService`, `inventory.v1.InventoryService`).

Built on grpclib's own `grpclib.health`: `Health` answers Check from the checks given per service,
and `ServingSwitch` is the one check here: grpclib's `ServiceStatus` (a status the application
sets, which wakes every watcher when it changes), starting at SERVING rather than UNKNOWN. It holds
what the server says about itself: SERVING until `GreetServer.set_serving(False)`, which graceful
shutdown calls before it drains.

`GreetHealth` keeps grpclib's Check and replaces Watch with one that ends the call (status OK)
right after it has sent NOT_SERVING. grpclib's Watch never returns, so every connected watcher
would otherwise hold a graceful drain open for the full grace period; a watcher that wants more
news calls Watch again (gRPC health clients retry an ended Watch), and once the server is gone
it gets UNAVAILABLE.
"""

from __future__ import annotations

from grpclib._typing import ICheckable
from grpclib.const import Status
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.server import Stream

from greet.server.services import service_names

__all__ = ["OVERALL_SERVICE", "GreetHealth", "ServingSwitch"]

OVERALL_SERVICE = ""
"""The service name health clients ask about for the server as a whole."""


class ServingSwitch(ServiceStatus):
    """grpclib's ServiceStatus, SERVING from the start; `set(False)` for NOT_SERVING."""

    def __init__(self, serving: bool = True) -> None:
        super().__init__()
        self.set(serving)

    @property
    def serving(self) -> bool:
        return self.__status__() is True


class GreetHealth(Health):
    """grpclib's Health service, reporting `switch` for "" and each service of `services`."""

    def __init__(self, services: list[ICheckable], switch: ServingSwitch) -> None:
        super().__init__({service: [switch] for service in services})
        self.switch = switch
        served = (name for service in services for name in service_names(service))
        self.service_names = frozenset([OVERALL_SERVICE, *served])

    async def Watch(self, stream: Stream[HealthCheckRequest, HealthCheckResponse]) -> None:
        """Send the current status, then every change; end after sending NOT_SERVING."""
        request = await stream.recv_message()
        if request is None:
            await stream.send_trailing_metadata(status=Status.INVALID_ARGUMENT)
            return
        changed = await self.switch.__subscribe__()
        try:
            if request.service not in self.service_names:
                # The spec keeps such a Watch open (the service may appear later); it ends
                # with the others when the server stops serving.
                await stream.send_message(
                    HealthCheckResponse(status=HealthCheckResponse.SERVICE_UNKNOWN)
                )
                while self.switch.serving:
                    changed.clear()
                    await changed.wait()
                return
            sent: bool | None = None
            while True:
                changed.clear()
                serving = self.switch.serving
                if serving != sent:
                    await stream.send_message(
                        HealthCheckResponse(
                            status=HealthCheckResponse.SERVING
                            if serving
                            else HealthCheckResponse.NOT_SERVING
                        )
                    )
                    sent = serving
                if not serving:
                    return
                await changed.wait()
        finally:
            await self.switch.__unsubscribe__(event=changed)
