"""The page's figure: a 1,000,000-line run shown in a real browser.

Starts `pushbutton --headless` on a one-job jobs.ini (`seq 1000000`), opens the page in Debian's
Chromium (Playwright), presses Run, and measures inside the page:
- time from the click on Run to the line `1000000` being in the DOM (the last line shown);
- the longest main-thread task meanwhile (PerformanceObserver, `longtask`: tasks over 50 ms);
- the output lines the DOM holds at the end.

    .venv/bin/python bench/page.py [--runs 3]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
JOBS = "[job:million]\ntitle = A million lines\ncommand = seq 1000000\n"
LINES = 1_000_000

WATCH = """last => { window.benchResult = new Promise(resolve => {
    const log = document.getElementById('log');
    let start = 0, longest = 0;
    new PerformanceObserver(list => {
        for (const e of list.getEntries()) if (start) longest = Math.max(longest, e.duration);
    }).observe({type: 'longtask'});
    document.getElementById('run-button').addEventListener('click', () => { start = performance.now(); },
                                                            {capture: true, once: true});
    new MutationObserver((_, observer) => {
        if (log.lastElementChild?.lastElementChild?.textContent !== last) return;
        const shown = performance.now() - start;
        observer.disconnect();
        // let a last long task, if any, be reported before answering
        setTimeout(() => resolve({shown, longest, lines: log.querySelectorAll('.l').length}), 300);
    }).observe(log, {childList: true, subtree: true});
}); }"""


def measure(browser, base: str) -> dict:
    page = browser.new_page(viewport={"width": 1024, "height": 700})
    page.goto(f"{base}/?token=bench")
    page.goto(f"{base}/#/jobs/million")
    page.get_by_role("button", name="Run", exact=True).wait_for()
    page.evaluate(WATCH, str(LINES))
    page.get_by_role("button", name="Run", exact=True).click()
    out = page.evaluate("window.benchResult")
    page.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pb-bench-page-"))
    (tmp / "jobs.ini").write_text(JOBS)
    exe = Path(sys.executable).with_name("pushbutton")
    server = subprocess.Popen([str(exe), "--headless", "--jobs", str(tmp / "jobs.ini"), "--port", "0",
                               "--token", "bench", "--data-dir", str(tmp / "data")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        base = re.search(r"(http://[^/\s]+)/", server.stdout.readline()).group(1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            results = [measure(browser, base) for _ in range(args.runs)]
            version = browser.version
            browser.close()
    finally:
        server.terminate()
        server.wait(15)
    shown = [r["shown"] for r in results]
    longest = [r["longest"] for r in results]
    print(f"page, seq {LINES} in Chromium {version}, {args.runs} runs, 1024x700")
    print(f"  click Run -> last line shown: median {statistics.median(shown) / 1000:.2f} s, "
          f"worst {max(shown) / 1000:.2f} s")
    print(f"  longest main-thread task meanwhile: median {statistics.median(longest):.0f} ms, "
          f"worst {max(longest):.0f} ms (0 = none over 50 ms)")
    print(f"  output lines in the DOM at the end: {sorted({r['lines'] for r in results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
