"""grpclib's events (`grpclib.events`) on greet's transport: dispatched only when listened to.

grpclib's dispatcher keeps a no-op in its instance dict for every event nobody listens to and
removes it when a listener is added (`grpclib.events.listen`). `Listening` reads which events
have listeners from that, and reads it again only when the dict changes size (a listener was
added): a call asks it once, and skips the dispatch (an await and a MultiDict) of every step
nobody listens to.
"""

from __future__ import annotations

__all__ = ["Listening"]


class Listening:
    """The events of one dispatcher that have listeners."""

    __slots__ = ("_dispatch", "_names", "_size")

    def __init__(self, dispatch: object) -> None:
        self._dispatch = dispatch
        self._size = -1
        self._names: frozenset[str] = frozenset()

    def names(self) -> frozenset[str]:
        """Dispatch method names (`recv_message`, ...) with at least one listener."""
        attributes = vars(self._dispatch)
        if len(attributes) != self._size:
            methods = getattr(type(self._dispatch), "__dispatch_methods__", {})
            self._names = frozenset(name for name in methods.values() if name not in attributes)
            self._size = len(attributes)
        return self._names
