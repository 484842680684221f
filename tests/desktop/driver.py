"""Drive a real Pushbutton window from inside its process, for the tests.

    python -m tests.desktop.driver SCENARIO [pushbutton arguments...]

The app starts exactly as `pushbutton` does (server.cli.main with the desktop window); the
scenario runs on its own thread once the first page has loaded, talks to the page through
pywebview's `run_js` (WebKit's evaluate_javascript), to GTK through the app's GUI-thread invoker
(`GLib.idle_add`), answers dialogs by clicking their buttons, and prints
what it saw as `DRIVER {json}` lines for the test to check. It reaches into the server only
through the page, as the analyst would, except to act as a second person (`as_other_user`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from desktop import app as desktop_app
from desktop import gtk_ui as ui
from server import cli

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def report(**fields) -> None:
    print("DRIVER " + json.dumps(fields), flush=True)


def js(app, script: str, timeout: float = 20):
    """Run `script` in the page and return its completion value. Not pywebview's `evaluate_js`:
    that wraps the script in eval(), which the page's Content-Security-Policy rightly refuses."""
    return app.window.run_js(script)


def js_promise(app, script: str, timeout: float = 20):
    """Evaluate `script`, a Promise, in the page and return what it resolves to."""
    key = uuid.uuid4().hex
    js(app, f"window.driverResults = window.driverResults || {{}}; Promise.resolve({script}).then("
            f"v => driverResults['{key}'] = JSON.stringify({{v}}), e => driverResults['{key}'] = JSON.stringify("
            f"{{error: String(e)}})); true")
    if not wait_until(lambda: js(app, f"'{key}' in driverResults"), timeout, 0.05):
        raise TimeoutError(f"page did not answer: {script[:80]}")
    answer = json.loads(js(app, f"driverResults['{key}']"))
    if "error" in answer:
        raise RuntimeError(f"page failed: {answer['error']}")
    return answer.get("v")


def fetch(app, method: str, path: str, body: dict | None = None) -> dict:
    """A request from the page itself (its cookie, its origin): the same as the job page does."""
    init = {"method": method, "credentials": "same-origin", "headers": {"Content-Type": "application/json"}}
    if body is not None:
        init["body"] = json.dumps(body)
    script = (f"fetch({json.dumps(path)}, {json.dumps(init)})"
              ".then(r => r.text().then(t => ({status: r.status, body: t, headers: Object.fromEntries(r.headers)})))")
    answer = js_promise(app, script)
    if isinstance(answer, str):
        answer = json.loads(answer)
    try:
        answer["json"] = json.loads(answer["body"])
    except (ValueError, TypeError):
        answer["json"] = None
    return answer


def start_job(app, job: str, params: dict | None = None) -> int:
    answer = fetch(app, "POST", f"/api/jobs/{job}/runs", {"params": params or {}})
    assert answer["status"] == 202, answer
    return answer["json"]["run"]["id"]


def wait_state(app, run_id: int, states: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = fetch(app, "GET", f"/api/runs/{run_id}")["json"]["state"]
        if state in states or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def on_gui(app, fn, timeout: float = 10):
    return app.main.wait(fn, timeout)


def wait_until(predicate, timeout: float = 10, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def focused(app) -> bool:
    return on_gui(app, lambda: ui.focused(app.native))


def steal_focus(app):
    """Focus another top-level window, as if the analyst switched to another program."""
    from gi.repository import Gtk

    def make():
        decoy = Gtk.Window(title="decoy")
        decoy.add(Gtk.Label(label="another program"))
        decoy.move(10, 10)
        decoy.resize(200, 80)
        decoy.show_all()
        decoy.present()
        app._decoy = decoy  # keep it alive

    on_gui(app, make)
    return wait_until(lambda: not focused(app))


def open_dialog(app, with_entry: bool, timeout: float = 15) -> dict | None:
    """The dialog on screen now (desktop.gtk_ui.OPEN_DIALOGS), waiting up to `timeout` for one."""
    def look():
        found = [d for d in ui.OPEN_DIALOGS if (d["entry"] is not None) == with_entry and d["dialog"].get_visible()]
        return found[-1] if found else None

    box = []
    wait_until(lambda: box.append(on_gui(app, look)) or box[-1] is not None, timeout)
    return box[-1] if box else None


def answer_dialog(app, button_text: str) -> list:
    """Arrange for the next question box to be answered by clicking `button_text`; the list gets
    the box's texts once it was seen (it is filled from a helper thread: poll it)."""
    import threading

    seen: list = []

    def answer():
        found = open_dialog(app, with_entry=False, timeout=20)
        if found is None:
            return
        dialog = found["dialog"]

        def read_and_click():
            seen.append({"title": dialog.get_title(), "text": dialog.props.text,
                         "informative": dialog.props.secondary_text, "buttons": sorted(found["buttons"])})
            found["buttons"][button_text].clicked()

        app.main(read_and_click)

    threading.Thread(target=answer, daemon=True).start()
    return seen


def close_window(app) -> None:
    """What the window's close button does."""
    app.main(app.native.close)


def processes_showing(secret: str) -> list[str]:
    """Processes whose command line or environment contains `secret` (any user can read command
    lines; environments are readable by the same user)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " ".join(f"{k}={v}" for k, v in proc.environ().items())
        except (psutil.Error, OSError):
            continue
        if secret in text:
            found.append(f"{proc.info['pid']} {proc.info['name']}")
    return found


def status_of(url: str) -> int:
    """What another program on this machine gets from the window's server."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def screenshot(path: str) -> None:
    subprocess.run(["import", "-window", "root", path], check=True, timeout=30)


# -- scenarios -------------------------------------------------------------------------------------

@scenario
def run_job(app):
    """Title, authenticated page, a job run to `succeeded`, a screenshot."""
    report(title=on_gui(app, app.native.get_title), url=app.window.get_current_url())
    # Record what the page's security policy refuses from now on; a canary proves the recording works.
    js(app, "window.cspViolations = []; document.addEventListener('securitypolicyviolation',"
            " e => cspViolations.push(e.effectiveDirective + ' ' + e.blockedURI));"
            " document.body.insertAdjacentHTML('beforeend', '<i id=canary hidden style=color:red></i>');"
            " document.getElementById('canary').remove(); true")
    report(token_seen_in=processes_showing(app.server.token),
           without_token=status_of(app.server.url + "api/jobs"),
           wrong_token=status_of(app.server.url + "?token=guess"))
    page = fetch(app, "GET", "/")
    jobs = fetch(app, "GET", "/api/jobs")
    report(page_status=page["status"], jobs_status=jobs["status"], page_headers=page["headers"],
           jobs=[j["id"] for j in (jobs["json"] or {}).get("jobs", [])])
    # As the analyst does it: pick the job in the list, fill the form, press Run, watch the run.
    ui = wait_until(lambda: js(app, "document.querySelector('a[href=\"#/jobs/greet\"]') !== null"), 15)
    report(job_in_list=ui)
    js(app, "document.querySelector('a[href=\"#/jobs/greet\"]').click(); true")
    wait_until(lambda: js(app, "document.querySelector('#fields [name=\"name\"]') !== null"), 15)
    js(app, "var f = document.querySelector('#fields [name=\"name\"]'); f.value = 'Xvfb';"
            "f.dispatchEvent(new Event('input', {bubbles: true})); document.querySelector('#run-button').click(); true")
    wait_until(lambda: js(app, "/^#\\/runs\\/\\d+/.test(location.hash)"), 15)
    run_id = int(js(app, "location.hash.split('/')[2]"))
    final = {"Succeeded", "Failed", "Cancelled", "Timed out", "Interrupted"}
    wait_until(lambda: js(app, "document.querySelector('#run-state').textContent.trim()") in final, 60)
    wait_until(lambda: "Hello, Xvfb!" in js(app, "document.body.innerText"), 10)
    report(badge=js(app, "document.querySelector('#run-state').textContent.trim()"),
           shown_output="Hello, Xvfb!" in js(app, "document.body.innerText"))
    state = wait_state(app, run_id, {"succeeded", "failed", "cancelled", "timed_out", "interrupted"})
    log = fetch(app, "GET", f"/api/runs/{run_id}/log")["body"]
    time.sleep(0.5)
    shot = os.environ.get("DRIVER_SCREENSHOT")
    if shot:
        screenshot(shot)
    report(run=run_id, state=state, log=log, csp_violations=json.loads(js(app, "JSON.stringify(cspViolations)")))
    close_window(app)


@scenario
def close_prompt(app):
    """Close with a run active: keep the window open, then stop and quit."""
    run_id = start_job(app, "slow")
    report(run=run_id, state=wait_state(app, run_id, {"running"}))
    seen = answer_dialog(app, "Keep the window open")
    close_window(app)
    wait_until(lambda: bool(seen), 15)
    time.sleep(0.5)
    report(first_dialog=seen[0] if seen else None, visible=on_gui(app, app.native.get_visible),
           state_after_keep=fetch(app, "GET", f"/api/runs/{run_id}")["json"]["state"])
    seen = answer_dialog(app, "Stop it and quit")
    close_window(app)
    wait_until(lambda: bool(seen), 15)
    report(second_dialog=seen[0] if seen else None)


@scenario
def notify(app):
    """Run ends while unfocused are announced; while focused they are not."""
    calls = []
    original = app.notifier.show

    def spy(notice):
        calls.append({"title": notice.title, "body": notice.body, "channels": original(notice)})
        return calls[-1]["channels"]

    app.notifier.show = spy
    on_gui(app, app.bring_forward)  # no window manager under Xvfb: nothing focuses a new window
    focused_first = wait_until(lambda: focused(app))
    run_id = start_job(app, "greet")
    wait_state(app, run_id, {"succeeded"})
    time.sleep(1)
    report(focused=focused_first, calls_while_focused=list(calls))
    report(unfocused=steal_focus(app))
    for job in ("greet", "fails"):
        run_id = start_job(app, job)
        wait_state(app, run_id, {"succeeded", "failed"})
    wait_until(lambda: len(calls) >= 2, 10)
    report(calls_while_unfocused=calls)
    close_window(app)


@scenario
def approval_notice(app):
    """A run waiting for this user's approval is announced while unfocused; their own is not."""
    calls = []
    original = app.notifier.show
    app.notifier.show = lambda notice: calls.append({"title": notice.title, "body": notice.body}) or original(notice)
    report(unfocused=steal_focus(app))
    own = start_job(app, "guarded")  # requested by the OS user, who may not approve their own run
    others = as_other_user(app, "guarded", "alice")
    wait_until(lambda: bool(calls), 10)
    time.sleep(0.5)  # the watcher handles runs in order: a notice for `own` would have come first
    report(own=own, own_state=wait_state(app, own, {"awaiting_approval"}), others=others, calls=calls)
    app.skip_prompt = True  # both runs are still waiting: close without asking
    close_window(app)


def as_other_user(app, job: str, user: str) -> int:
    """Start a run as `user` in the window's server (the page is always the OS user)."""
    return app.server.call(lambda: app.server.runs.start(job, {}, confirmed=True, user=user).id, timeout=10)


@scenario
def single_instance(app):
    """A second launch on the same data brings this window forward and exits 0. Without a window
    manager (Xvfb) nothing can minimise a window, so it is hidden instead: gone from the screen,
    as minimised is."""
    on_gui(app, app.native.hide)
    wait_until(lambda: not on_gui(app, app.native.get_visible), 5)
    report(minimized=not on_gui(app, app.native.get_visible), unfocused=steal_focus(app))
    second = [a for a in sys.argv[2:]]
    t0 = time.monotonic()
    proc = subprocess.run([os.environ["DRIVER_PUSHBUTTON"], *second], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    forward = wait_until(lambda: focused(app))
    report(second_code=proc.returncode, second_stderr=proc.stderr, second_seconds=took, forward=forward)
    close_window(app)


@scenario
def geometry(app):
    """Report the geometry; with DRIVER_GEOMETRY=WxH+X+Y set it first (it is saved on close)."""
    want = os.environ.get("DRIVER_GEOMETRY")
    if want:
        size, x, y = want.split("+")
        w, h = map(int, size.split("x"))
        on_gui(app, lambda: (app.native.resize(w, h), app.native.move(int(x), int(y))))
        wait_until(lambda: list(on_gui(app, lambda: ui.geometry(app.native))) == [w, h, int(x), int(y)], 5)
    report(geometry=list(on_gui(app, lambda: ui.geometry(app.native))))
    close_window(app)


@scenario
def page_text(app):
    """What the window shows (for the error pages)."""
    report(title=on_gui(app, app.native.get_title), text=js(app, "document.body.innerText"))
    close_window(app)


def answer_input(app, answer: str | None) -> dict | None:
    """If a text dialog is open: note what it shows, then type `answer` and press OK, or press
    Cancel (None), as the analyst would."""
    def look():
        found = [d for d in ui.OPEN_DIALOGS if d["entry"] is not None and d["dialog"].get_visible()]
        if not found:
            return None
        box = found[-1]
        seen = {"title": box["dialog"].get_title(), "label": box["label"].get_text(),
                "password": not box["entry"].get_visibility()}
        if answer is None:
            box["buttons"]["Cancel"].clicked()
        else:
            box["entry"].grab_focus()
            for char in answer:  # typed: the same signal a key press ends in
                box["entry"].emit("insert-at-cursor", char)
            box["buttons"]["OK"].clicked()
        return seen

    return on_gui(app, look)


@scenario
def askpass(app):
    """Run the `remote` job; answer every ssh prompt with DRIVER_ANSWER, or Cancel when it is unset."""
    report(**asked(app, start_job(app, "remote")))
    close_window(app)


@scenario
def askpass_upload(app):
    """As `askpass`, for the `upload` job: a file uploaded from the page, copied to each host."""
    script = ("(() => { const form = new FormData(); form.append('json', JSON.stringify({params: {}}));"
              " form.append('data', new Blob(['uploaded,ok\\n']), 'in.csv');"
              " return fetch('/api/jobs/upload/runs', {method: 'POST', body: form, credentials: 'same-origin'})"
              ".then(r => r.json()); })()")
    report(**asked(app, js_promise(app, script)["run"]["id"]))
    close_window(app)


@scenario
def askpass_twice(app):
    """The `remote` job twice in a row, each answered as in `askpass`."""
    first = asked(app, start_job(app, "remote"))
    report(first=first, second=asked(app, start_job(app, "remote")))
    close_window(app)


@scenario
def askpass_stop(app):
    """The `remote` job stopped while its key's passphrase dialog is open: how long the run took
    to end, the dialog still unanswered."""
    run_id = start_job(app, "remote")
    deadline = time.monotonic() + 60
    while not on_gui(app, lambda: any(d["entry"] is not None and d["dialog"].get_visible() for d in ui.OPEN_DIALOGS)):
        assert time.monotonic() < deadline, "no dialog"
        time.sleep(0.1)
    stopped = time.monotonic()
    fetch(app, "POST", f"/api/runs/{run_id}/cancel")
    final = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}
    while (run := fetch(app, "GET", f"/api/runs/{run_id}")["json"])["state"] not in final:
        assert time.monotonic() < stopped + 60, "the run never ended"
        time.sleep(0.1)
    took = time.monotonic() - stopped
    answer_input(app, None)  # the analyst closes the dialog, late
    log = fetch(app, "GET", f"/api/runs/{run_id}/log")["body"]
    report(state=run["state"], hosts=run["hosts"], took=took, log=log)
    close_window(app)


def asked(app, run_id: int) -> dict:
    """Answer every ssh prompt of run `run_id` until it ends; what it asked and how it ended."""
    answer = os.environ.get("DRIVER_ANSWER")
    slow = float(os.environ.get("DRIVER_SLOW", "0"))  # seconds the analyst takes over the first dialog
    dialogs = []
    final = {"succeeded", "failed", "cancelled", "timed_out", "interrupted"}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if slow and not dialogs and on_gui(app, lambda: any(d["entry"] is not None and d["dialog"].get_visible()
                                                            for d in ui.OPEN_DIALOGS)):
            time.sleep(slow)
            slow = 0
        seen = answer_input(app, answer)
        if seen:
            dialogs.append(seen)
        elif fetch(app, "GET", f"/api/runs/{run_id}")["json"]["state"] in final:
            break
        time.sleep(0.2)
    run = fetch(app, "GET", f"/api/runs/{run_id}")["json"]
    log = fetch(app, "GET", f"/api/runs/{run_id}/log")["body"]
    return {"run": run_id, "state": run["state"], "hosts": run["hosts"], "dialogs": dialogs, "log": log}


def main() -> int:
    name = sys.argv[1]
    fn = SCENARIOS[name]

    def ready(app):
        try:
            fn(app)
        except BaseException as exc:
            report(error=f"{type(exc).__name__}: {exc}")
            app.skip_prompt = True
            if app.main is not None:
                app.main(app.native.close)
            raise

    def window(args, catalog, problems=None):
        return desktop_app.open_window(args, catalog, problems, on_ready=ready)

    return cli.main(sys.argv[2:], window=window)


if __name__ == "__main__":
    sys.exit(main())
