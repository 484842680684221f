"""Window geometry, remembered between launches in the user config dir (never beside the executable).

Plain numbers, which every backend understands: the content size and the frame's position. A
position no longer on any screen (a monitor unplugged) is dropped when the window opens
(`on_a_screen`), and the window is centred instead.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

APP_NAME = "pushbutton"
DEFAULT_SIZE = (1100, 760)
MIN_SIZE = (480, 360)


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME))


@dataclass
class Geometry:
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    x: int | None = None
    y: int | None = None


def geometry_path() -> Path:
    return config_dir() / "window.json"


def load_geometry(path: Path | None = None) -> Geometry:
    """The saved geometry, or the default one if there is none or it is unreadable."""
    path = path or geometry_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Geometry()
    if not isinstance(raw, dict):
        return Geometry()
    geo = Geometry()

    def number(key: str, low: int) -> int | None:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= low else None

    geo.width = max(MIN_SIZE[0], number("width", 1) or DEFAULT_SIZE[0])
    geo.height = max(MIN_SIZE[1], number("height", 1) or DEFAULT_SIZE[1])
    geo.x, geo.y = number("x", -100_000), number("y", -100_000)
    if geo.x is None or geo.y is None:
        geo.x = geo.y = None
    return geo


def on_a_screen(geo: Geometry, screens: list[tuple[int, int, int, int]], grip: int = 48) -> bool:
    """Whether the window's top edge (where it is dragged from) shows at least `grip` pixels on one
    of the `screens` (x, y, width, height)."""
    if geo.x is None or geo.y is None:
        return False
    for sx, sy, sw, sh in screens:
        visible = min(geo.x + geo.width, sx + sw) - max(geo.x, sx)
        if visible >= grip and sy <= geo.y < sy + sh - grip // 2:
            return True
    return False


def save_geometry(geo: Geometry, path: Path | None = None) -> None:
    """Write atomically: a crash mid-write must not lose the previous geometry."""
    path = path or geometry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(geo), indent=1), encoding="utf-8")
    os.replace(tmp, path)
