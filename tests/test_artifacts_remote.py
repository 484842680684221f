"""Remote jobs keep no artifacts (docs/files.md): on a real sshd host the job has no
PB_ARTIFACTS, and the run has no artifacts folder and an empty list."""

from __future__ import annotations

import pytest

from tests.ssh import sshd


@pytest.fixture
def host():
    reason = sshd.missing()
    if reason:
        pytest.fail(f"remote artifacts are tested against real sshd: {reason}")
    sshd.ensure_user()
    lab = sshd.Lab()
    try:
        server = lab.start("art1")
        sshd.write_known_hosts(lab)
        yield sshd.host_section(lab, server, "art1")
    finally:
        lab.close()


def test_a_remote_job_gets_no_pb_artifacts_and_its_run_keeps_no_artifacts(host, tmp_path, pushbutton):
    jobs = tmp_path / "jobs.ini"
    jobs.write_text(host + "[job:far]\ncommand = sh -c 'echo \"artifacts=[${PB_ARTIFACTS-unset}]\"'\n"
                           "targets = host:art1\n")
    pb = pushbutton(jobs)
    run_id = pb.start_run("far")["id"]
    assert pb.wait(run_id)["state"] == "succeeded"
    assert "artifacts=[unset]" in pb.output(run_id)
    assert pb.client.get(f"/api/runs/{run_id}/artifacts").json() == {"artifacts": []}
    assert not (pb.data_dir / "runs" / str(run_id) / "artifacts").exists()
