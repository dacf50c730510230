"""`python -m greet.server`: serve GreetService (see `--help`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from greet.server.config import parse_config
from greet.server.run import configure_logging, run_event_loop, serve
from greet.server.supervisor import supervise


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
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
