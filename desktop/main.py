"""The `pushbutton` command: a window by default, `--headless` for browsers.

Only the window path imports pywebview and Qt (in `desktop.app`); `--headless`, `check` and `run`
go straight to the server package and never load a GUI toolkit.
"""

from __future__ import annotations

import sys


def open_window(args, catalog, problems: list[str] | None = None) -> int:
    """`server.cli` calls this when no `--headless` was given; `catalog` is None (and `problems`
    says why) when the jobs.ini could not be loaded."""
    try:
        from desktop.app import open_window as open_app_window
    except ImportError as exc:
        print(f"pushbutton: the desktop window is not installed ({exc.name or exc}); install it with "
              "pip install 'pushbutton[desktop]', or serve browsers with: pushbutton --headless",
              file=sys.stderr)
        for line in problems or []:
            print(line, file=sys.stderr)
        return 2
    return open_app_window(args, catalog, problems)


def main(argv: list[str] | None = None) -> int:
    from server.cli import main as cli_main

    return cli_main(argv, window=open_window)


if __name__ == "__main__":
    sys.exit(main())
