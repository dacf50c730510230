"""grpclib's events (`grpclib.events`) on greet's transport: dispatched only when listened to."""

from __future__ import annotations

__all__ = ["listened"]


def listened(dispatch: object, method: str) -> bool:
    """Whether grpclib event listeners wait on this dispatch method (`recv_message`, ...).

    grpclib's dispatcher keeps a no-op in its instance dict for every event nobody listens to
    (and removes it when a listener is added): with none, the dispatch is skipped, which spares
    an await and a MultiDict per step of every call.
    """
    return method not in vars(dispatch)
