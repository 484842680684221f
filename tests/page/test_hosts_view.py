"""The run view of a remote run against real sshd hosts (tests/ssh/sshd.py): every host's live
state, exit code and reason, the count per state, the output filtered by host in the worker, and a
100-host fan-out without a main-thread task over 200 ms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.page.conftest import start_site, stop_site
from tests.ssh import sshd


@pytest.fixture(scope="module")
def hosts_lab():
    reason = sshd.missing()
    if reason:
        pytest.fail(f"the hosts view is tested against real sshd: {reason}")
    sshd.ensure_user()
    lab = sshd.Lab(remote_cpu=True)  # the hosts stand for other machines: see CpuGroup
    try:
        lab.start("a")
        lab.start("b")
        sshd.write_known_hosts(lab)
        lab.slow = sshd.SlowProxy(lab.servers[0].port, delay=2)  # a host slow to answer
        yield lab
    finally:
        if hasattr(lab, "slow"):
            lab.slow.close()
        lab.close()


def catalog(lab: sshd.Lab) -> str:
    a, b = lab.servers
    down = sshd.Sshd("down", sshd.free_port(), lab.root, "", None)  # nothing listens there
    many = "".join(sshd.host_section(lab, a, f"t{i}") for i in range(1, 101))
    return ("[pushbutton]\nmax_concurrent_runs = 4\n\n" + sshd.host_section(lab, a, "ok")
            + sshd.host_section(lab, b, "bad") + sshd.host_section(lab, down, "down") + many
            + "[job:mixed]\ntitle = Mixed hosts\ntargets = host:ok, host:bad, host:down\n"
              "command = sh -c 'echo \"hello from $TESTHOST\"; while [ ! -e \"$PB_GATE\" ]; do sleep 0.05; done; "
              "echo \"bye from $TESTHOST\"; [ \"$TESTHOST\" != b ] || exit 3'\n"
              "param.gate.type = text\nparam.gate.label = Gate\nparam.gate.required = yes\n\n"
            + sshd.host_section(lab, a, "slow", port=lab.slow.port, host_key=a.host_key)
            + "[job:slow]\ntitle = A slow host\ntargets = host:slow\ncommand = echo hi\n\n"
            + "[group:many]\nhosts = " + ", ".join(f"t{i}" for i in range(1, 101)) + "\nparallel = 100\n\n"
            + "[job:hundred]\ntitle = A hundred hosts\ntargets = group:many\n"
              "command = seq -f 'line %g' 1 200\n")


@pytest.fixture
def site(hosts_lab, tmp_path):
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(catalog(hosts_lab))
    site = start_site(jobs, tmp_path)
    yield site
    stop_site(site)


def counts(page):
    return page.get_by_role("status", name="Hosts by state")


def row(page, name: str):
    return page.locator(f'#host-list li[data-host="{name}"]')


def test_hosts_show_live_states_counts_exit_codes_and_reasons(ui, site, hosts_lab):
    gate = hosts_lab.scratch / "gate-mixed"
    page = ui.open(site)
    ui.open_job(page, "Mixed hosts")
    page.get_by_label("Gate").fill(str(gate))
    ui.run(page)
    expect(counts(page)).to_have_text("1 unreachable · 2 running")
    expect(row(page, "ok").locator(".badge")).to_have_text("running")
    Path(gate).touch()
    expect(counts(page)).to_have_text("1 succeeded · 1 failed · 1 unreachable")
    expect(ui.status(page)).to_have_text("Failed")
    expect(row(page, "bad")).to_contain_text("failed")
    expect(row(page, "bad").locator(".host-exit")).to_have_text("exit 3")
    expect(row(page, "ok").locator(".host-exit")).to_have_text("exit 0")
    reason = row(page, "down").locator("details p")
    expect(reason).to_be_hidden()
    row(page, "down").get_by_text("Why").click()
    expect(reason).to_be_visible()
    expect(reason).to_have_text(re.compile(r"^refused: nothing accepts SSH connections on 127\.0\.0\.1:\d+"))
    assert row(page, "ok").locator("details").is_hidden()  # a host without an error has no reason


def test_a_host_is_connecting_until_its_command_runs(ui, site):
    page = ui.open(site)
    ui.open_job(page, "A slow host")
    ui.run(page)
    expect(counts(page)).to_have_text("1 connecting")
    expect(row(page, "slow").locator(".badge")).to_have_text("connecting")
    expect(counts(page)).to_have_text("1 succeeded")
    expect(page.locator("#log .l")).to_have_text(["slowhi"])


def test_filter_shows_only_one_hosts_lines(ui, site, hosts_lab):
    gate = hosts_lab.scratch / "gate-filter"
    gate.touch()
    page = ui.open(site)
    ui.open_job(page, "Mixed hosts")
    page.get_by_label("Gate").fill(str(gate))
    ui.run(page)
    expect(counts(page)).to_have_text("1 succeeded · 1 failed · 1 unreachable")
    expect(page.locator("#log .l")).to_have_count(5)  # 2 + 2 lines, 1 reason line for down
    page.get_by_label("Output of").select_option("ok")
    expect(page.locator("#log .l")).to_have_count(2)
    assert ui.lines(page) == ["okhello from a", "okbye from a"]
    row(page, "down").get_by_role("button", name="down").click()  # clicking a host filters to it
    expect(page.get_by_label("Output of")).to_have_value("down")
    expect(page.locator("#log .l")).to_have_count(1)
    expect(page.locator("#log .l").first).to_contain_text("pushbutton: refused:")
    expect(row(page, "down").locator("details p")).to_be_visible()  # and its reason opens
    page.get_by_label("Output of").select_option("")
    expect(page.locator("#log .l")).to_have_count(5)


@pytest.mark.timeout(300)  # the fan-out alone may take its 120 s on a busy 2-core machine: past the suite's cap
def test_a_hundred_hosts_keep_the_page_responsive_with_rows_counts_and_one_hosts_output(ui, site):
    """The rows, counts and filter for a 100-host fan-out, every main-thread task under 200 ms of
    CPU (issue 12), from the run's start through the filter's re-read of all 20,000 lines. Measured
    as each task's CPU time, from Chromium's trace: a long task's wall-clock time holds the time it
    waited for a CPU, and a busy CI machine made tasks of a few ms of work take 209 and 639 ms.
    That the fan-out itself leaves the page its CPU is test_fanout_states.py's: its ssh clients at
    nice 19, in the server's scheduling group, which is not the browser's. (Before those, tasks
    took 294-718 ms, nearly all of it waiting for the CPU 100 ssh clients took, each its own
    autogroup; the page's main thread then spent ~45% of a core on the fan-out, redrawing in every
    frame, which paced redraws (assets/js/frames.js) and test_run.py's redraw count keep down.)"""
    page = ui.open(site)
    with ui.main_thread_cpu() as tasks:
        ui.open_job(page, "A hundred hosts")
        ui.run(page)
        expect(counts(page)).to_have_text("100 succeeded", timeout=120_000)
        expect(ui.status(page)).to_have_text("Succeeded")
        assert page.locator("#host-list li").count() == 100
        expect(page.locator("#log .l")).to_have_count(5000)
        page.get_by_label("Output of").select_option("t42")
        expect(page.locator("#log .l")).to_have_count(200)
        assert set(page.locator("#log .l .host").all_text_contents()) == {"t42"}
        page.get_by_label("Output of").select_option("")
        expect(page.locator("#log .l")).to_have_count(5000)
    assert len(tasks) > 100  # the trace saw the page at work
    longest = sorted(tasks)[-5:]
    assert longest[-1] <= 200, f"the longest main-thread tasks, in ms of CPU: {longest}"
