"""Entry point of `pushbutton-server`: the headless build (no window, no Qt).

Same arguments as `pushbutton`; `--headless` is implied (and accepted), `check` and `run` work the
same. With no window to hand over, server.cli serves browsers.
"""

import sys

from server.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], window=None))
