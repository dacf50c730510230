"""`python -m greet.client`: see `greet.client.cli`."""

import sys

from greet.client.cli import main

if __name__ == "__main__":
    sys.exit(main())
