"""The `pushbutton` command: a window by default, `--headless` for browsers.

Only the window path imports pywebview; `--headless`, `check` and `run` go straight to the server
package.
"""

from __future__ import annotations

import sys


def open_window(args, catalog) -> int:
    print("pushbutton: the desktop window is not built yet; start with --headless and open the "
          "printed address in a browser", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    from server.cli import main as cli_main

    return cli_main(argv, window=open_window)


if __name__ == "__main__":
    sys.exit(main())
