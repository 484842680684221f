"""The desktop shell's parts that need no display: notices, geometry, the error page, the
single-instance handshake, how cli hands problems to the window, and that the terminal commands
never load a GUI toolkit."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from desktop import settings
from desktop.errorpage import error_page
from desktop.instance import SingleInstance, address_for
from desktop.notify import notice_for
from server import cli
from tests.desktop.conftest import ROOT

GUI_MODULES = ("webview", "gi", "cairo", "PySide6", "shiboken6", "qtpy", "desktop.app", "desktop.gtk_ui")


# -- notices ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("record, focused, expected", [
    ({"id": 7, "state": "succeeded", "exit_code": 0}, False, ("Deploy succeeded", "Run 7 finished.")),
    ({"id": 8, "state": "failed", "exit_code": 3}, False, ("Deploy failed", "Run 8 exited with status 3.")),
    ({"id": 9, "state": "failed", "exit_code": None}, False, ("Deploy failed", "Run 9 finished.")),
    ({"id": 10, "state": "timed_out", "exit_code": None}, False,
     ("Deploy timed out", "Run 10 ran past its time limit and was stopped.")),
    ({"id": 11, "state": "succeeded", "exit_code": 0}, True, None),  # the analyst is looking
    ({"id": 12, "state": "cancelled", "exit_code": None}, False, None),  # the analyst did it
    ({"id": 13, "state": "interrupted", "exit_code": None}, False, None),  # the app is stopping
    ({"id": 14, "state": "running", "exit_code": None}, False, None),
])
def test_notice_for(record, focused, expected):
    notice = notice_for(record, "Deploy", focused)
    assert (None if notice is None else (notice.title, notice.body)) == expected
    if notice is not None:
        assert notice.ok == (record["state"] == "succeeded")


def test_notice_for_a_run_waiting_for_approval_names_the_requester():
    notice = notice_for({"id": 15, "state": "awaiting_approval", "user": "alice"}, "Deploy", False)
    assert (notice.title, notice.body) == ("Deploy waits for your approval", "Run 15 was requested by alice.")
    assert notice_for({"id": 16, "state": "awaiting_approval", "user": "alice"}, "Deploy", True) is None


# -- geometry --------------------------------------------------------------------------------------

def test_geometry_round_trip_and_defaults(tmp_path):
    path = tmp_path / "cfg" / "window.json"
    assert settings.load_geometry(path) == settings.Geometry()
    geo = settings.Geometry(width=900, height=640, x=-20, y=30)
    settings.save_geometry(geo, path)
    assert settings.load_geometry(path) == geo
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"width": "wide", "height": null, "x": 5}',
                                  '{"width": 10, "height": 10, "x": true, "y": 1, "qt": 5}'])
def test_unreadable_geometry_falls_back_to_something_sane(tmp_path, text):
    path = tmp_path / "window.json"
    path.write_text(text)
    geo = settings.load_geometry(path)
    assert geo.width >= settings.MIN_SIZE[0] and geo.height >= settings.MIN_SIZE[1]
    assert (geo.x is None) == (geo.y is None)


# Two screens side by side, 1920x1080 and 1280x1024 to its right.
SCREENS = [(0, 0, 1920, 1080), (1920, 0, 1280, 1024)]


@pytest.mark.parametrize("x, y, shown", [
    (100, 100, True), (2000, 500, True),  # on the first, on the second
    (1900, 30, True),  # straddling both: the grip shows across the edge
    (-900, 100, True),  # mostly off the left edge, but 200 px still show
    (3300, 100, False), (-1080, 100, False), (100, 1070, False),  # right of all, 20 px left, below the bottom
    (2000, 1040, False),  # below the second screen (it is shorter)
])
def test_a_saved_position_counts_only_on_a_screen(x, y, shown):
    assert settings.on_a_screen(settings.Geometry(width=1100, height=760, x=x, y=y), SCREENS) is shown
    assert settings.on_a_screen(settings.Geometry(), SCREENS) is False  # nothing saved


def test_a_position_on_an_unplugged_screen_is_off_screen():
    assert settings.on_a_screen(settings.Geometry(width=1100, height=760, x=2000, y=100), SCREENS[:1]) is False


def test_geometry_lives_in_the_user_config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert settings.geometry_path() == tmp_path / "pushbutton" / "window.json"


# -- error page ------------------------------------------------------------------------------------

def test_error_page_lists_problems_escaped():
    html = error_page(["/x/jobs.ini:3: unknown key <script>alert(1)</script>"], None)
    assert "jobs.ini has problems" in html
    assert "/x/jobs.ini:3: unknown key &lt;script&gt;" in html and "<script>alert" not in html


def test_error_page_without_a_file_lists_where_it_looked():
    html = error_page(["pushbutton: no jobs.ini found; looked in: a, b"], ["/opt/app/jobs.ini", "/home/u/jobs.ini"])
    assert "No jobs.ini found" in html
    assert "<li>/opt/app/jobs.ini</li>" in html and "<li>/home/u/jobs.ini</li>" in html


# -- single instance -------------------------------------------------------------------------------

def test_one_window_per_data_dir_and_the_second_asks_the_first(tmp_path):
    first, second = SingleInstance(tmp_path / "data"), SingleInstance(tmp_path / "data")
    other = SingleInstance(tmp_path / "other")
    assert first.acquire()
    try:
        assert not second.acquire()
        assert other.acquire()  # another data dir is another app
        other.release()
        raised = threading.Event()
        first.listen(lambda: raised.set() or True)
        assert second.ask_to_raise(timeout=5) == "raised"
        assert raised.wait(5)
    finally:
        first.release()
    assert not (tmp_path / "data" / "desktop.sock").exists()
    assert second.acquire()  # free again once the first is gone
    second.release()


def test_the_lock_is_held_across_processes_and_dropped_when_the_holder_dies(tmp_path):
    code = ("import sys, time; from desktop.instance import SingleInstance; "
            f"i = SingleInstance({str(tmp_path)!r}); print(i.acquire(), flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        mine = SingleInstance(tmp_path)
        assert not mine.acquire()
        assert mine.ask_to_raise(timeout=0.5) == ""  # holds the lock but does not listen: no answer
    finally:
        holder.kill()
        holder.wait()
    assert mine.acquire()  # a crashed holder leaves nothing stale
    (tmp_path / "desktop.sock").touch()  # a socket file left by a crash is replaced
    mine.listen(lambda: True)
    assert SingleInstance(tmp_path).ask_to_raise(timeout=5) == "raised"
    mine.release()


def test_a_second_launch_during_shutdown_waits_and_takes_over(tmp_path):
    """The window was closed and its runs are still stopping: the new launch must not be told
    "brought forward" (there is nothing to see), it waits for the lock and starts."""
    first, second = SingleInstance(tmp_path), SingleInstance(tmp_path)
    assert first.acquire()
    first.listen(lambda: False)  # closing
    assert second.ask_to_raise(timeout=5) == "closing"
    threading.Timer(0.5, first.release).start()
    t0 = time.monotonic()
    assert second.wait_for_lock(timeout=10)
    assert 0.4 < time.monotonic() - t0 < 5
    assert not SingleInstance(tmp_path).acquire()  # the new launch holds it now
    assert not SingleInstance(tmp_path).wait_for_lock(timeout=0.3)  # gives up while it is held
    second.release()


def test_a_long_data_dir_puts_the_socket_in_the_temp_dir(tmp_path):
    deep = tmp_path / ("x" * 120)
    address, family = address_for(deep)
    if sys.platform != "win32":
        assert family == "AF_UNIX" and len(address.encode()) <= 104 and address != str(deep / "desktop.sock")
    instance = SingleInstance(deep)
    assert instance.acquire()
    instance.listen(lambda: True)
    assert SingleInstance(deep).ask_to_raise(timeout=5) == "raised"
    instance.release()


class _Touch:
    """Unpickling this creates a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_only_raw_bytes_are_read_from_the_socket(tmp_path):
    """A peer sending a pickle must not get it unpickled: anything but `raise` is ignored."""
    from multiprocessing.connection import Client

    instance = SingleInstance(tmp_path / "data")
    assert instance.acquire()
    calls = []
    instance.listen(lambda: calls.append(1) or True)
    marker = tmp_path / "unpickled"
    conn = Client(instance.address, instance.family)
    conn.send(_Touch(marker))
    with pytest.raises((EOFError, ConnectionResetError)):  # hung up without an answer
        conn.recv_bytes()
    conn.close()
    assert calls == [] and not marker.exists()
    assert SingleInstance(tmp_path / "data").ask_to_raise(timeout=5) == "raised"  # still serving
    assert calls == [1]
    instance.release()


# -- cli hands the problems to the window; headless keeps printing them ----------------------------

def test_cli_gives_the_window_the_problems_and_headless_prints_them(tmp_path, capsys):
    bad = tmp_path / "jobs.ini"
    bad.write_text("[job:x]\ncommand = echo {nope}\n")
    got = []

    def window(args, catalog, problems=None):
        got.append((catalog, problems))
        return 2

    assert cli.main(["--jobs", str(bad)], window=window) == 2
    (catalog, problems), = got
    assert catalog is None and problems and all(p.startswith(f"{bad}:2: ") for p in problems)
    assert capsys.readouterr().err == ""
    for argv in (["--headless", "--jobs", str(bad)], ["check", "--jobs", str(bad)]):
        assert cli.main(argv, window=window) == 2
        assert capsys.readouterr().err.splitlines() == problems
    assert len(got) == 1


def test_cli_gives_the_window_the_missing_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    got = []
    assert cli.main([], window=lambda args, catalog, problems=None: got.append(problems) or 2) == 2
    assert got[0][0].startswith("pushbutton: no jobs.ini found; looked in: ")
    assert cli.main(["--headless"], window=None) == 2
    assert "no jobs.ini found" in capsys.readouterr().err


# -- no GUI toolkit in the terminal commands -------------------------------------------------------

def _imported(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def _gui(names: set[str]) -> set[str]:
    return {n for n in names if any(n == m or n.startswith(m + ".") for m in GUI_MODULES)}


@pytest.mark.parametrize("argv", [["check"], ["run", "greet", "-p", "name=imports"]])
def test_check_and_run_never_import_a_gui(tmp_path, argv):
    if argv[0] == "run":
        argv = [*argv, "--data-dir", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "desktop.main", *argv,
                           "--jobs", str(ROOT / "jobs.ini")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = _imported(proc.stderr)
    assert "server.cli" in names  # the measurement works
    assert _gui(names) == set()


def test_headless_never_imports_a_gui(tmp_path):
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "desktop.main", "--headless", "--port", "0",
                             "--jobs", str(ROOT / "jobs.ini"), "--data-dir", str(tmp_path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout.readline().startswith("Pushbutton serving on http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    names = _imported(err)
    assert "server.runtime" in names and "gevent" in names
    assert _gui(names) == set()


def test_desktop_main_itself_is_light():
    code = ("import sys, json; import desktop.main; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('webview', 'gi', 'cairo', 'PySide6', 'qtpy', 'shiboken6'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
