"""Every jobs.ini example in the README and docs/ is one `check` accepts, but for what it names
outside itself (a key file on the ops machine, a job or host shown in another example). A reader
copies these; one that named a parameter it never declared reached `check` as an error."""

import re
from pathlib import Path

import pytest

from server import catalog as C

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OURS = re.compile(r"^\[(pushbutton|(job|team|host|group|schedule|notify):[^\]]+)\]", re.M)
# Problems about what an excerpt leaves to the reader's own file or machine.
ELSEWHERE = re.compile(r"cannot read|needs the client secret|the bind DN needs its password|folder '.*' does not exist")
# ... and a job, host or team shown in another example: forgiven only in an excerpt that shows none
# of its own (one that does and names another has a typo).
SHOWN_ELSEWHERE = {"job": re.compile(r"no job '"), "host": re.compile(r"unknown host '"),
                   "team": re.compile(r"names no \[team:")}


def left_to_the_reader(message: str, text: str) -> bool:
    if ELSEWHERE.search(message):
        return True
    return any(pattern.search(message) and f"[{kind}:" not in text for kind, pattern in SHOWN_ELSEWHERE.items())


def examples():
    for page in PAGES:
        text = page.read_text()
        for block in re.finditer(r"^```ini\n(.*?)^```", text, re.M | re.S):
            if OURS.search(block.group(1)):  # not a systemd unit, say
                line = text[:block.start()].count("\n") + 1
                yield pytest.param(block.group(1), id=f"{page.relative_to(ROOT)}:{line}")


@pytest.mark.parametrize("text", list(examples()))
def test_a_docs_example_passes_check_but_for_what_it_leaves_to_the_reader(text, tmp_path):
    shown = text
    if "[job:" not in text:  # settings shown alone: a file needs a job
        text += "\n[job:example]\ncommand = true\n"
    path = tmp_path / "jobs.ini"
    path.write_text(text)
    try:
        C.load(path)
    except C.CatalogError as exc:
        own = [str(p).replace(str(path), "FILE") for p in exc.problems if not left_to_the_reader(p.message, shown)]
        assert own == []


def test_the_examples_are_found():
    assert len(list(examples())) >= 15  # the pattern still finds them


def test_every_audit_action_is_in_the_api_docs_table():
    from server.auth.audit import ACTIONS

    table = (ROOT / "docs" / "api.md").read_text().split("| action | when |", 1)[1].split("\n\n", 1)[0]
    listed = {name for cell in re.findall(r"^\| ([^|]+) \|", table, re.M) for name in re.findall(r"`([a-z.]+)`", cell)}
    assert set(ACTIONS) - listed == set()
    assert listed - set(ACTIONS) == set()


def test_the_api_docs_name_every_field_of_a_job_a_parameter_and_a_run(pushbutton, write_jobs):
    """The listing's and RUN's fields as the server answers them, each named in docs/api.md."""
    pb = pushbutton(write_jobs("""
        [job:j]
        command = wc -l {f} {n}
        param.f.type = file
        param.n.type = int
        """))
    api = (ROOT / "docs" / "api.md").read_text()
    listing = next(line for line in api.splitlines() if line.startswith("| `GET /api/jobs` |") and "\"jobs\"" in line)
    run_block = api.split("**RUN**", 1)[1].split("```", 2)[1]
    answer = pb.client.get("/api/jobs").json()
    job = answer["jobs"][0]
    fields = {*answer, *job, *(key for p in job["params"] for key in p)}
    assert [f for f in sorted(fields) if f'"{f}"' not in listing] == []
    run = pb.client.post("/api/jobs/j/runs", files={"f": ("a.txt", b"x\n")}, data={"json": '{"params": {"n": 1}}'})
    assert run.status_code == 202, run.text
    assert [f for f in sorted(run.json()["run"]) if f'"{f}"' not in run_block] == []
