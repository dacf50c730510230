"""`python -m greet.server` (and the `greet-server` script): serve GreetService (see `--help`).

Ctrl-C during start-up ends the process without a traceback: until the server (or supervisor)
installs its own SIGINT handler, SIGINT keeps its default action, which ends the process at once.
That is why the server modules are imported inside `main`, after that is arranged, and why the
package `greet.server` imports them lazily: an interrupted import would otherwise print one.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

__all__ = ["main"]

INTERRUPTED = 128 + signal.SIGINT
"""The exit status of a process ended by SIGINT, as shells report it."""


@contextlib.contextmanager
def sigint_default_action() -> Iterator[None]:
    """SIGINT ends the process at once (its default action, which prints nothing) while inside,
    unless a handler installed meanwhile (the server's) takes over. Only in the main thread,
    where Python handles signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with sigint_default_action():
            return serve_from_command_line(argv)
    except KeyboardInterrupt:  # after the server removed its handler, while exiting
        return INTERRUPTED


def serve_from_command_line(argv: Sequence[str] | None) -> int:
    from greet.server.config import parse_config

    config = parse_config(argv)  # before the heavy imports: quick --help and usage errors

    import logging

    from greet.server.run import configure_logging, run_event_loop, serve
    from greet.server.supervisor import supervise

    configure_logging(config)
    try:
        if config.workers != 1:  # a supervisor of worker processes (0: one per CPU)
            return supervise(config)
        run_event_loop(serve(config))
    except OSError as error:
        logging.getLogger("greet.server").error("cannot serve: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
