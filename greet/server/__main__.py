"""`python -m greet.server`: serve GreetService (see `--help`)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from greet.server.config import parse_config
from greet.server.run import serve


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_config(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve(config))
    except OSError as error:
        logging.getLogger("greet.server").error("cannot serve: %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
