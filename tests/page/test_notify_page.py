"""Browser notifications in real Chromium: the permission is asked on the Run click (a user gesture),
never on load; a run the user started that ends while the tab is hidden shows one notification,
which leads back to the run; one that ends while the tab is visible shows none.

What is emulated, in an init script: the tab being hidden (`document.visibilityState`, which
headless Chromium always reports `visible`), and a recorder around the real `Notification`
(Chromium's own constructor and permission still run; the context grants or withholds it)."""

from __future__ import annotations

import re
import textwrap

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site

JOBS = """
    [job:fails]
    title = Quick failure
    shell = yes
    command = sleep 1; echo done; exit 4

    [job:waits]
    title = Waits for a file
    shell = yes
    command = while [ ! -e "$PB_GATE" ]; do sleep 0.05; done
    param.gate.type = text
"""

RECORDER = """
(() => {
  const Real = window.Notification;
  window.__hidden = false;
  Object.defineProperty(Document.prototype, 'visibilityState',
    {configurable: true, get: () => window.__hidden ? 'hidden' : 'visible'});
  window.__notes = [];
  window.__asked = [];
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push(this);
    }
    static get permission() { return Real.permission; }
    static requestPermission(...args) {
      window.__asked.push(navigator.userActivation.isActive);  // inside a click's activation?
      return Real.requestPermission(...args);
    }
  }
  window.Notification = Recorded;
})();
"""


@pytest.fixture
def site(tmp_path):
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(textwrap.dedent(JOBS).lstrip())
    site = start_site(jobs, tmp_path)
    yield site
    stop_site(site)


def open_page(ui, site, **context):
    page = ui.blank(**context)
    page.add_init_script(RECORDER)
    page.goto(site.login())
    page.locator("#job-list .job").first.wait_for()
    return page


def notes(page) -> list[dict]:
    return page.evaluate("window.__notes.map(n => ({title: n.title, body: n.body, tag: n.tag}))")


def test_the_permission_is_asked_on_the_run_click_and_not_on_load(ui, site):
    page = open_page(ui, site)  # permission not granted: Chromium's is "default"
    assert page.evaluate("Notification.permission") == "default"
    assert page.evaluate("window.__asked") == []  # opening the page asks nothing
    ui.open_job(page, "Quick failure")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Failed")
    assert page.evaluate("window.__asked") == [True]  # once, inside the click's user activation


def test_a_run_ending_while_the_tab_is_hidden_shows_one_notification_that_leads_back(ui, site):
    page = open_page(ui, site, permissions=["notifications"])
    assert page.evaluate("Notification.permission") == "granted"
    ui.open_job(page, "Quick failure")
    ui.run(page)
    expect(ui.status(page)).to_have_text("Running")
    run_id = int(re.search(r"#/runs/(\d+)", page.url).group(1))
    page.evaluate("window.__hidden = true")  # the analyst switched to another tab
    page.wait_for_function("() => window.__notes.length > 0")
    page.wait_for_timeout(500)  # nothing more follows
    assert notes(page) == [{"title": "Quick failure: Failed", "body": f"Run {run_id} · exit code 4",
                            "tag": f"pushbutton-run-{run_id}"}]
    page.evaluate("location.hash = '#/'")
    page.evaluate("window.__notes[0].onclick()")  # the analyst clicks it
    expect(page).to_have_url(re.compile(rf"#/runs/{run_id}$"))
    expect(ui.status(page)).to_have_text("Failed")


def test_only_the_end_seen_while_hidden_notifies_not_one_seen_while_visible(ui, site, tmp_path):
    page = open_page(ui, site, permissions=["notifications"])
    ui.open_job(page, "Waits for a file")
    ids = []
    for name in ("first", "second"):
        page.get_by_label("Gate").fill(str(tmp_path / name))
        ui.run(page)
        expect(ui.status(page)).to_have_text("Running")
        ids.append(int(re.search(r"#/runs/(\d+)", page.url).group(1)))
        page.go_back()
        expect(page.get_by_role("heading", name="Waits for a file", level=2)).to_be_visible()
    (tmp_path / "first").touch()  # ends while the analyst looks at the page
    expect(page.locator("#job-runs li").filter(has_text=f"Run {ids[0]}")).to_contain_text("Succeeded")
    page.wait_for_timeout(300)
    page.evaluate("window.__hidden = true")
    (tmp_path / "second").touch()  # ends while the tab is hidden
    page.wait_for_function("() => window.__notes.length > 0")
    page.wait_for_timeout(500)
    assert [n["tag"] for n in notes(page)] == [f"pushbutton-run-{ids[1]}"]
