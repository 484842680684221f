"""The server's runtime: its own thread and hub, no monkey patching, per-greenlet requests."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import os, sys, threading
    from concurrent.futures import ThreadPoolExecutor

    import bottle, gevent, httpx
    from gevent.pywsgi import WSGIServer
    from server.runtime import make_bottle_greenlet_local

    if sys.argv[1] == "patched":
        make_bottle_greenlet_local()
    app = bottle.Bottle()

    @app.get("/echo/<n>")
    def echo(n):
        before = bottle.request.query.get("n")
        gevent.sleep(0.02)  # a cooperative wait: other requests run meanwhile
        bottle.response.set_header("X-N", n)
        return f"{before}|{bottle.request.query.get('n')}|{bottle.request.path}"

    ready, box = threading.Event(), {}

    def serve():  # as server/runtime.py does: own thread, own hub, no monkey patching
        server = WSGIServer(("127.0.0.1", 0), app, log=None)
        server.start()
        box["port"] = server.server_port
        ready.set()
        gevent.get_hub().join()

    threading.Thread(target=serve, daemon=True).start()
    ready.wait()

    def ask(n):
        try:
            res = httpx.get(f"http://127.0.0.1:{box['port']}/echo/{n}?n={n}", timeout=5)
        except httpx.HTTPError:  # mixed-up responses can leave a client waiting for a body
            return False
        return res.text == f"{n}|{n}|/echo/{n}" and res.headers["X-N"] == str(n)

    with ThreadPoolExecutor(40) as pool:
        print(sum(not ok for ok in pool.map(ask, range(200))), flush=True)
    os._exit(0)  # the hub thread is still serving: do not finalize the interpreter around it
""")


def wrong_answers(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_concurrent_requests_with_a_cooperative_wait_each_see_their_own_request():
    assert wrong_answers("patched") == 0


def test_without_greenlet_local_bottle_requests_would_mix():
    # The control: proves the probe above can fail.
    assert wrong_answers("unpatched") > 0


def test_server_never_monkey_patches_or_imports_a_gui():
    code = ("import sys, server.cli, server.runtime, server.api; import gevent.monkey as m; "
            "print(m.is_anything_patched(), [k for k in sys.modules if k.split('.')[0] in "
            "('webview', 'PySide6', 'PyQt6', 'desktop', 'tkinter')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False []"


@pytest.mark.parametrize("module", ["server"])
def test_server_package_does_not_import_desktop(module):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / module
    offenders = [str(p) for p in root.rglob("*.py")
                 if any(word in p.read_text() for word in ("import desktop", "from desktop", "import webview"))]
    assert offenders == []
