"""GreetH2Connection: h2's connection with greet's starting settings, a GOAWAY that closes
nothing, and greet's CONTINUATION limit.

(1) It starts with greet's local settings instead of h2's MAX_CONCURRENT_STREAMS of 100, which h2
enforces by closing the connection (greet refuses the extra stream instead); (2) it treats a
peer's GOAWAY as "no new streams": h2 itself moves the connection to CLOSED and would refuse to
finish the calls in flight; (3) a header block may span `EngineLimits.max_continuations`
CONTINUATION frames, as on libnghttp2, instead of h2's fixed 64 (1 MiB of metadata in 16 KiB
frames is 65 of them, which h2 answers by closing the connection where greet refuses that one
call with RESOURCE_EXHAUSTED). The private names it overrides have contract tests
(tests/test_upstream_contracts.py); h2 is pinned below 5.
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from h2.exceptions import ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.settings import SettingCodes, Settings
from hyperframe.frame import ContinuationFrame, Frame, GoAwayFrame

from greet.transport.engine import EngineLimits

__all__ = ["GreetH2Connection", "HeaderBlockBuffer"]

MAX_STREAM_ID = 2**31 - 1


class HeaderBlockBuffer(FrameBuffer):
    """h2's frame buffer with greet's bounds on one header block: at most `max_continuations`
    CONTINUATION frames and `max_bytes` of encoded headers (past either, a connection error, as
    h2's own limit is). The middle frames of a long block are folded into one, so h2's count of
    64 frames is never reached; the block h2 assembles is the same bytes."""

    def __init__(self, *, server: bool, max_continuations: int, max_bytes: int) -> None:
        super().__init__(server=server)
        self.max_continuations = max_continuations
        self.max_bytes = max_bytes
        self._continuations = 0
        self._block_bytes = 0
        self._folded: list[bytes] = []

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        buffered = self._headers_buffer
        if buffered and isinstance(f, ContinuationFrame) and f.stream_id == buffered[0].stream_id:
            self._continuations += 1
            self._block_bytes += len(f.data)
            if self._continuations > self.max_continuations:
                raise ProtocolError("Too many continuation frames received.")
            if self._block_bytes > self.max_bytes:
                raise ProtocolError("Header block too large.")
            if len(buffered) > 1 and "END_HEADERS" not in f.flags:
                self._folded.append(f.data)  # into the first CONTINUATION, when the block ends
                return None
            if self._folded:
                buffered[-1].data += b"".join(self._folded)
                self._folded.clear()
        elif not buffered:
            self._continuations = 0
            self._block_bytes = len(getattr(f, "data", b""))  # a HEADERS frame may begin one
        return super()._update_header_buffer(f)


class GreetH2Connection(H2Connection):
    """h2's connection with greet's starting settings and a GOAWAY that closes nothing.

    `DEFAULT_MAX_HEADER_LIST_SIZE` is h2's class attribute for the size its HPACK decoder gives
    up at (a connection error): greet's hard limit. The smaller limit greet advertises is applied
    per call by the connection.
    """

    DEFAULT_MAX_HEADER_LIST_SIZE = EngineLimits.hard_header_list_size

    def __init__(self, config: H2Configuration, limits: EngineLimits) -> None:
        super().__init__(config)
        initial: dict[SettingCodes, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAM_ID,  # enforced per stream by greet
            SettingCodes.MAX_HEADER_LIST_SIZE: limits.hard_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        }
        if config.client_side:
            initial[SettingCodes.ENABLE_PUSH] = 0
        self.local_settings = Settings(client=config.client_side, initial_values=initial)
        self.max_inbound_frame_size = limits.max_frame_size
        self.incoming_buffer = HeaderBlockBuffer(
            server=not config.client_side,
            max_continuations=limits.max_continuations,
            max_bytes=limits.hard_header_list_size,
        )

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """A GOAWAY is reported, and h2's state machine is left open for the streams in flight
        (greet's connection opens no new streams after it)."""
        event = ConnectionTerminated()
        event.error_code = ErrorCodes(frame.error_code) if frame.error_code < 14 else None
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
