"""Remote output is masked exactly as local output: the same hostile job over SSH leaves no
fragment of a secret in the stream, the log, the API or SQLite."""

from __future__ import annotations

from tests.test_secrets import JOB, PARAMS_E2E, assert_no_fragment_anywhere


def test_no_fragment_of_a_secret_survives_a_remote_run(pushbutton, write_jobs, hosts_ini, lab):
    script = lab.scratch / "leak.py"
    script.write_text(JOB)
    script.chmod(0o644)
    pb = pushbutton(write_jobs(hosts_ini + f"[job:leak]\ncommand = /usr/bin/python3 {script}\ntargets = host:h1\n"
                               + PARAMS_E2E))
    assert_no_fragment_anywhere(pb, "leak")
