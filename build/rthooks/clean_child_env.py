# PyInstaller runtime hook: the bootloader points LD_LIBRARY_PATH at the bundle's libraries and
# sets _PYI_* variables for itself. Every job, and every helper program, started from the frozen
# app would inherit them: system programs would load the bundle's libssl/libsqlite, and a job that
# runs another PyInstaller program (or Pushbutton itself) would reuse this one's unpacked folder.
# This process has already loaded its libraries (the loader reads LD_LIBRARY_PATH once, at start),
# so restoring the original environment only affects children.
import os
import sys

if "_PYI_SPLASH_IPC" in os.environ:
    # The window build's splash (Linux): connect to it now, while its variable is still here; the
    # window closes it once shown (desktop/app.py). pyi_splash removes the variable itself.
    import pyi_splash  # noqa: F401

_bundle = getattr(sys, "_MEIPASS", None)
for _name in ("LD_LIBRARY_PATH", "LIBPATH", "DYLD_LIBRARY_PATH"):
    _orig = os.environ.pop(_name + "_ORIG", None)
    if _orig is not None:
        os.environ[_name] = _orig
    elif _bundle and _name in os.environ:
        _kept = [p for p in os.environ[_name].split(os.pathsep) if p and not p.startswith(_bundle)]
        if _kept:
            os.environ[_name] = os.pathsep.join(_kept)
        else:
            del os.environ[_name]
for _key in [k for k in os.environ if k.startswith("_PYI_") or k == "_MEIPASS2"]:
    del os.environ[_key]
# A child that is this program again (ssh's askpass helper, a job running pushbutton) shows no splash.
os.environ["PYINSTALLER_SUPPRESS_SPLASH_SCREEN"] = "1"
