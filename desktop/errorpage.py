"""The page a window shows instead of the jobs when jobs.ini cannot be served."""

from __future__ import annotations

from html import escape

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2.5em; color: #1f2328; }
h1 { font-size: 1.4em; margin: 0 0 .6em; }
ul.problems { font: 13px/1.6 ui-monospace, "Cascadia Mono", Menlo, monospace; background: #fff8f0;
  border: 1px solid #f0c090; border-radius: 6px; padding: .8em 1em .8em 2.2em; }
code { font-family: ui-monospace, Menlo, monospace; background: #f3f4f6; padding: 0 .3em; border-radius: 3px; }
p.hint { color: #57606a; }
"""


def error_page(problems: list[str], looked_in: list[str] | None) -> str:
    """`problems` are `FILE:LINE: message` lines (or one line saying no file was found);
    `looked_in` lists where a jobs.ini is searched for when none was found."""
    if looked_in:
        title = "No jobs.ini found"
        intro = "Pushbutton needs a <code>jobs.ini</code> that describes the jobs. It looked in these places:"
        items = looked_in
        hint = ("Put a <code>jobs.ini</code> in one of them (usually next to the program) and start "
                "Pushbutton again, or ask whoever gave you this program for one.")
    else:
        title = "jobs.ini has problems"
        intro = "Pushbutton cannot offer these jobs until the following lines are fixed:"
        items = problems
        hint = ("Fix them (each line says <code>FILE:LINE: what is wrong</code>), check with "
                "<code>pushbutton check</code>, then start Pushbutton again.")
    lis = "\n".join(f"<li>{escape(item)}</li>" for item in items)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Pushbutton: {escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><p>{intro}</p>"
            f"<ul class='problems'>{lis}</ul><p class='hint'>{hint}</p></body></html>")
