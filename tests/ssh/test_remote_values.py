"""The value property of tests/values.py on a remote target (real sshd): every type, in argv and
in the environment, is refused with a field error or arrives byte for byte, and never begins an
argument with '-' unless the parameter allows it."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings

from tests import values as V
from tests.ssh import sshd


@pytest.fixture(scope="module")
def remote_values_server(lab, tmp_path_factory):
    h1 = next(server for server in lab.servers if server.name == "h1")
    pb = V.server(tmp_path_factory.mktemp("remote-values"), sshd.host_section(lab, h1), "targets = host:h1\n")
    yield pb
    pb.stop()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=V.cases())
def test_every_type_in_argv_and_env_on_a_remote_host_is_refused_or_arrives_and_never_leads_with_a_dash(
        remote_values_server, case):
    V.check_case(remote_values_server, *case)


def test_sort_on_a_remote_host_cannot_be_made_to_overwrite_a_file(pushbutton, write_jobs, hosts_ini, lab):
    victim, data = lab.scratch / "victim.txt", lab.scratch / "in.txt"
    victim.write_text("precious\n")
    data.write_text("b\na\n")
    shutil.chown(victim, sshd.USER)  # the login user could overwrite it: only the refusal stops that
    pb = pushbutton(write_jobs(hosts_ini + """
        [job:sort]
        command = sort {file}
        targets = host:h1
        param.file.type = text
        [job:sort-safe]
        command = sort -- {file}
        targets = host:h1
        param.file.type = text
        """))
    res = pb.client.post("/api/jobs/sort/runs", json={"params": {"file": f"--output={victim}"}})
    assert res.status_code == 400, res.text
    assert res.json()["fields"] == {"file": "must not start with '-' (it would be read as an option)"}
    assert pb.client.get("/api/runs").json()["runs"] == []  # nothing recorded, nothing sent
    safe = pb.start_run("sort-safe", file=f"--output={victim}")["id"]  # after --: a file name, absent
    assert pb.wait(safe)["state"] == "failed"
    assert victim.read_text() == "precious\n"
    assert pb.output(pb.start_run("sort", file=str(data))["id"]) == ["a", "b"]


def test_a_command_line_too_long_for_a_remote_host_is_refused_by_field_and_the_value_still_travels_as_env(
        pushbutton, write_jobs, hosts_ini):
    # Two values of 80 KB each run locally (each its own argv element), but a remote command line
    # is one string for ssh and for the host's login shell: at most 128 KiB. Refused when given
    # (server/command_size.py), as any value the command could not run with; it used to be
    # accepted, recorded, and then fail every host.
    pb = pushbutton(write_jobs(hosts_ini + """
        [job:argv]
        command = sh -c 'printf %s "$1$2" | wc -c' sh {a} {b}
        targets = host:h1, host:h2
        param.a.type = multiline
        param.b.type = multiline
        [job:env]
        command = sh -c 'printf %s "$PB_A$PB_B" | wc -c'
        targets = host:h1
        param.a.type = multiline
        param.b.type = multiline
        """))
    big = {"a": "1234567\n" * 10000, "b": "1234567\n" * 10000}
    res = pb.client.post("/api/jobs/argv/runs", json={"params": big})
    assert res.status_code == 400, res.text[:300]
    fields = res.json()["fields"]
    assert set(fields) == {"a", "b"}, fields
    for message in fields.values():
        assert message.startswith("too long: 80,000 bytes, and the command line for a remote host would be "), message
        assert "131,071" in message and "$PB_NAME" in message and "file parameter" in message, message
    assert pb.client.get("/api/runs").json()["runs"] == []
    # PB_A=... is exported on the host to the command it starts: execve's limit there too
    alone = pb.client.post("/api/jobs/env/runs", json={"params": {"a": "x" * 131_067}})
    assert alone.status_code == 400 and "at most 131,066" in alone.json()["fields"]["a"], alone.text[:300]
    ok = pb.start_run("env", **big)["id"]
    assert pb.wait(ok)["state"] == "succeeded"
    assert pb.output(ok) == ["160000"]
