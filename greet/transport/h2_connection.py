"""GreetH2Connection: h2's connection with greet's starting settings and a GOAWAY that closes
nothing.

(1) It starts with greet's local settings instead of h2's MAX_CONCURRENT_STREAMS of 100, which h2
enforces by closing the connection (greet refuses the extra stream instead); (2) it treats a
peer's GOAWAY as "no new streams": h2 itself moves the connection to CLOSED and would refuse to
finish the calls in flight. The private names it overrides have contract tests
(tests/test_upstream_contracts.py); h2 is pinned below 5.
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated, Event
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame

from greet.transport.engine import EngineLimits

__all__ = ["GreetH2Connection"]

MAX_STREAM_ID = 2**31 - 1


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

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        """A GOAWAY is reported, and h2's state machine is left open for the streams in flight
        (greet's connection opens no new streams after it)."""
        event = ConnectionTerminated()
        event.error_code = ErrorCodes(frame.error_code) if frame.error_code < 14 else None
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
