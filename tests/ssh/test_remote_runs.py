"""Remote runs against real sshd: output per host, fan-out, injection, host keys, failures."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import textwrap
import time

import httpx

from tests.helpers import BIN, lines_of, wait_for
from tests.ssh import sshd


def jobs(write_jobs, hosts_ini: str, text: str, extra: str = ""):
    return write_jobs(hosts_ini + extra + textwrap.dedent(text))


def by_host(events) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        if e.type == "output":
            out.setdefault(e.data["host"], []).extend(e.data["lines"])
    return out


def test_one_host_streams_output_and_records_the_host(pushbutton, write_jobs, hosts_ini):
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [job:hello]
        command = sh -c 'echo "out $TESTHOST $1"; echo "err $TESTHOST" >&2; exit "$1"' sh {code}
        targets = host:h1
        param.code.type = int
        [job:local]
        command = echo here
        """))
    ok = pb.start_run("hello", code=0)["id"]
    events = pb.events(ok)
    assert [(e.data["stream"], e.data["host"], e.data["lines"]) for e in events if e.type == "output"] in (
        [("stdout", "h1", ["out h1 0"]), ("stderr", "h1", ["err h1"])],
        [("stderr", "h1", ["err h1"]), ("stdout", "h1", ["out h1 0"])],
    )
    run = pb.run(ok)
    assert (run["state"], run["exit_code"]) == ("succeeded", 0)
    assert run["hosts"] == [{"name": "h1", "state": "succeeded", "exit_code": 0, "error": None}]

    bad = pb.start_run("hello", code=3)["id"]
    run = pb.wait(bad)
    assert (run["state"], run["exit_code"]) == ("failed", 3)
    assert run["hosts"] == [{"name": "h1", "state": "failed", "exit_code": 3, "error": None}]
    history = {r["id"]: r for r in pb.client.get("/api/runs").json()["runs"]}
    assert history[bad]["hosts"] == run["hosts"]  # stored, not only in memory

    local = pb.start_run("local")["id"]
    assert pb.wait(local)["hosts"] == []
    assert [e.data for e in pb.events(local) if e.type == "output"] == [{"stream": "stdout", "lines": ["here"]}]
    jobs_list = {j["id"]: j for j in pb.client.get("/api/jobs").json()["jobs"]}
    assert (jobs_list["hello"]["targets"], jobs_list["local"]["targets"]) == (["h1"], [])


def test_group_output_is_interleaved_and_attributed_to_the_right_host(pushbutton, write_jobs, hosts_ini):
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [group:all]
        hosts = h1, h2, h3, h4, h5, h6
        [job:count]
        command = sh -c 'i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo "$TESTHOST $i"; sleep 0.01; done'
        targets = group:all
        """))
    run_id = pb.start_run("count")["id"]
    events = pb.events(run_id)
    names = [f"h{n}" for n in range(1, 7)]
    outputs = [e for e in events if e.type == "output"]
    for e in outputs:  # every line says which sshd printed it
        assert all(line.split()[0] == e.data["host"] for line in e.data["lines"]), e.data
    assert by_host(events) == {h: [f"{h} {i}" for i in range(1, 41)] for h in names}
    order = [e.data["host"] for e in outputs]
    switches = sum(a != b for a, b in zip(order, order[1:], strict=False))
    assert switches > 2 * len(names), f"hosts did not run side by side: {order}"
    run = pb.run(run_id)
    assert (run["state"], run["exit_code"], run["progress"]) == ("succeeded", 0, 100.0)
    assert [(h["name"], h["state"], h["exit_code"]) for h in run["hosts"]] == [(h, "succeeded", 0) for h in names]


HOSTILE = [
    "$(touch {mark})", "`touch {mark}`", "'; touch {mark}; '", '"; touch {mark}; "', "a && touch {mark}",
    "x | touch {mark}", "> {mark}", "\\$HOME \\", "*", "~", "-n", "--", "%s %n %b", "  spaced  ", "tab\there",
    "é ☃ 日本", "!!", "$((1+1))", "${{PATH}}",
]


def test_injection_through_every_parameter_type_arrives_literally(pushbutton, write_jobs, hosts_ini, lab):
    mark = lab.scratch / "injected"
    choices = ["$(touch MARK)".replace("MARK", str(mark)), "a;b", "`touch MARK`".replace("MARK", str(mark))]
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [job:echo]
        command = sh -c 'printf "[%s]\\n" "$@"; printf %s "$PB_KEY" | od -An -tx1 -v' sh
            {{text}} {{multi}} {{num}} {{real}} {{flag}} {{pick}} {{many}} {{day}} --tag={{text}}
        targets = host:h1
        param.text.type = text
        param.text.allow_dash = yes
        param.multi.type = multiline
        param.num.type = int
        param.num.allow_dash = yes
        param.real.type = float
        param.flag.type = bool
        param.pick.type = choice
        param.pick.choices = {", ".join(choices)}
        param.many.type = multichoice
        param.many.choices = {", ".join(choices)}
        param.day.type = date
        param.key.type = secret
        """))
    secret = f"s3cr3t '$(touch {mark})' \"\\ é"
    multi = "\n".join(h.format(mark=mark) for h in HOSTILE) + "\n'\"\n"
    for value in HOSTILE:
        text = value.format(mark=mark)
        run_id = pb.start_run("echo", text=text, multi=multi, num=-5, real=2.5, flag=True, pick=choices[0],
                              many=[choices[2], choices[0]], day="2024-02-29", key=secret)["id"]
        events = pb.events(run_id)
        assert pb.run(run_id)["state"] == "succeeded", lines_of(events)
        values = [text, multi, "-5", "2.5", "true", choices[0], choices[2], choices[0], "2024-02-29", f"--tag={text}"]
        expected = "".join(f"[{v}]\n" for v in values).split("\n")[:-1]
        out = lines_of(events, "stdout")
        assert out[:len(expected)] == expected
        assert "".join(out[len(expected):]).split() == [f"{b:02x}" for b in secret.encode()]
    assert not mark.exists()


def test_unknown_and_changed_host_keys_are_refused_before_anything_is_sent(pushbutton, write_jobs, lab, servers):
    mark = lab.scratch / "hostkey-ran"
    h1 = servers["h1"]
    empty = lab.known_hosts("known_empty", [])
    wrong = lab.known_hosts("known_wrong", [h1.known_hosts_line(lab.other_public)])
    hosts_ini = (sshd.host_section(lab, h1, "unknown", known_hosts=empty)
                 + sshd.host_section(lab, h1, "changed", known_hosts=wrong))
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [job:touch]
        command = sh -c 'touch {mark}; echo "$PB_KEY"'
        targets = host:unknown, host:changed
        param.key.type = secret
        """))
    logins = h1.logins(lab.user_key)
    run_id = pb.start_run("touch", key="hunter2-key")["id"]
    events = pb.events(run_id)
    run = pb.run(run_id)
    assert (run["state"], run["exit_code"]) == ("failed", None)
    unknown, changed = run["hosts"]
    assert unknown["state"] == changed["state"] == "failed"
    assert unknown["error"].startswith(f"host key unknown: 127.0.0.1:{h1.port} is not in {empty}; nothing was sent")
    assert changed["error"].startswith(f"host key changed: 127.0.0.1:{h1.port} offered a key (SHA256:")
    assert "does not match" in changed["error"]
    assert by_host(events) == {"unknown": [f"pushbutton: {unknown['error']}"],
                               "changed": [f"pushbutton: {changed['error']}"]}
    assert run["message"] == "2 of 2 hosts failed: unknown (host key unknown), changed (host key changed)"
    assert h1.logins(lab.user_key) == logins  # never authenticated, so no command and no secret left
    assert not mark.exists()


def test_wrong_key_is_refused(pushbutton, write_jobs, lab, servers):
    mark = lab.scratch / "wrongkey-ran"
    hosts_ini = sshd.host_section(lab, servers["h2"], "h2", identity=lab.other_key)
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [job:touch]
        command = touch {mark}
        targets = host:h2
        """))
    run = pb.wait(pb.start_run("touch")["id"])
    assert run["state"] == "failed"
    assert run["hosts"][0]["error"] == f"auth failed: {sshd.USER}@127.0.0.1 refused key {lab.other_key}"
    assert run["message"] == run["hosts"][0]["error"]
    assert not mark.exists()


def test_down_and_silent_hosts_fail_alone_without_stalling_the_others(pushbutton, write_jobs, lab, servers):
    silent = socket.socket()  # accepts TCP, never says a word: only connect_timeout ends it
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    silent_port = silent.getsockname()[1]
    down_port = sshd.free_port()
    good = ["h1", "h2", "h3"]
    hosts_ini = "".join(sshd.host_section(lab, servers[h]) for h in good)
    hosts_ini += sshd.host_section(lab, servers["h1"], "down", port=down_port)
    hosts_ini += sshd.host_section(lab, servers["h1"], "silent", port=silent.getsockname()[1],
                                   connect_timeout="4s")
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [group:mixed]
        hosts = h1, down, silent, h2, h3
        [job:hi]
        command = echo hi
        targets = group:mixed
        """))
    try:
        started = time.monotonic()
        run_id = pb.start_run("hi")["id"]

        def settled():
            hosts = {h["name"]: h for h in pb.run(run_id)["hosts"]}
            return hosts if all(hosts[h]["state"] == "succeeded" for h in good) else None

        hosts = wait_for(settled, timeout=10)
        assert hosts["silent"]["state"] == "connecting"  # still waiting for its banner: it holds up no one
        assert hosts["down"]["state"] == "failed"
        lag = time.monotonic()
        assert httpx.get(pb.url + "/healthz").status_code == 200
        assert time.monotonic() - lag < 0.5
        run = pb.wait(run_id, timeout=15)
    finally:
        silent.close()
    assert 4 <= time.monotonic() - started < 12
    hosts = {h["name"]: h for h in run["hosts"]}
    assert hosts["down"]["error"] == f"refused: nothing accepts SSH connections on 127.0.0.1:{down_port}"
    assert hosts["silent"]["error"] == f"timed out: no answer from 127.0.0.1:{silent_port} within 4s"
    assert (run["state"], run["exit_code"]) == ("failed", None)
    assert run["message"] == "2 of 5 hosts failed: down (refused), silent (timed out)"
    assert by_host(pb.events(run_id))["h2"] == ["hi"]


def test_group_parallel_caps_hosts_at_once(pushbutton, write_jobs, hosts_ini):
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [group:two]
        hosts = h1, h2, h3, h4, h5
        parallel = 2
        [job:span]
        command = sh -c 'date +%s.%N; sleep 0.8; date +%s.%N'
        targets = group:two
        """))
    run_id = pb.start_run("span")["id"]
    spans = [tuple(map(float, lines)) for lines in by_host(pb.events(run_id)).values()]
    assert len(spans) == 5 and pb.run(run_id)["state"] == "succeeded"
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2


def test_the_ssh_agent_is_used_when_no_identity_is_given(pushbutton, write_jobs, lab, servers, monkeypatch,
                                                         tmp_path):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_for(sock.exists, timeout=10)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run(["ssh-add", "-q", str(lab.user_key)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no default keys to fall back on
        section = sshd.host_section(lab, servers["h3"]).replace(f"identity = {lab.user_key}\n", "")
        pb = pushbutton(jobs(write_jobs, section, """
            [job:who]
            command = sh -c 'echo "$TESTHOST $(id -un)"'
            targets = host:h3
            """))
        run_id = pb.start_run("who")["id"]
        assert lines_of(pb.events(run_id)) == [f"h3 {sshd.USER}"]
        assert pb.run(run_id)["state"] == "succeeded"
    finally:
        agent.terminate()
        agent.wait()


def test_pushbutton_hosts_says_which_hosts_answer_and_why_not(write_jobs, lab, servers):
    h1 = servers["h1"]
    down = sshd.free_port()
    hosts_ini = (sshd.host_section(lab, h1, "good")
                 + sshd.host_section(lab, h1, "stranger", known_hosts=lab.known_hosts("known_none", []))
                 + sshd.host_section(lab, h1, "badkey", identity=lab.other_key)
                 + sshd.host_section(lab, h1, "down", port=down))
    path = jobs(write_jobs, hosts_ini, """
        [job:x]
        command = true
        """)
    out = subprocess.run([BIN, "hosts", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert set(rows) == {"good", "stranger", "badkey", "down"}
    assert "reachable" in rows["good"] and f"{sshd.USER}@127.0.0.1:{h1.port} ran a command" in rows["good"]
    assert "host key unknown" in rows["stranger"] and "is not in" in rows["stranger"]
    assert "auth failed" in rows["badkey"] and str(lab.other_key) in rows["badkey"]
    assert "refused" in rows["down"] and f"127.0.0.1:{down}" in rows["down"]

    reachable_only = jobs(write_jobs, sshd.host_section(lab, h1, "good"), "[job:x]\ncommand = true\n")
    ok = subprocess.run([BIN, "hosts", "--jobs", str(reachable_only)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "reachable" in ok.stdout


def test_secret_digest_reaches_the_host(pushbutton, write_jobs, hosts_ini):
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [job:digest]
        command = sh -c 'printf %s "$PB_TOKEN" | sha256sum'
        targets = host:h4
        param.token.type = secret
        """))
    secret = "multi word 'secret' $(x) é"
    run_id = pb.start_run("digest", token=secret)["id"]
    assert lines_of(pb.events(run_id)) == [hashlib.sha256(secret.encode()).hexdigest() + "  -"]


def test_a_login_banner_is_not_output_and_everything_the_command_prints_is(pushbutton, write_jobs, hosts_ini, lab,
                                                                           servers):
    plain = subprocess.run(  # the lab's hosts do greet a plain `ssh host command` on its stderr
        ["ssh", "-T", "-p", str(servers["h1"].port), "-i", str(lab.inspector_key), "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={lab.root / 'known_hosts'}",
         f"{sshd.USER}@127.0.0.1", "echo 'command err' >&2"], capture_output=True, text=True, timeout=30)
    assert "Authorized access only: h1 is monitored." in plain.stderr and "command err" in plain.stderr
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [group:two]
        hosts = h1, h2
        [job:talk]
        command = sh -c 'echo "err first" >&2; echo out; printf "err last, no newline" >&2'
        targets = group:two
        """))
    run_id = pb.start_run("talk")["id"]
    events = pb.events(run_id)
    assert pb.run(run_id)["state"] == "succeeded"
    for host in ("h1", "h2"):
        mine = [e for e in events if e.type == "output" and e.data["host"] == host]
        assert lines_of(mine, "stderr") == ["err first", "err last, no newline"]
        assert lines_of(mine, "stdout") == ["out"]
    log = pb.client.get(f"/api/runs/{run_id}/log").text
    assert "Authorized" not in log and "BANNER" not in log


def test_a_banner_before_a_refused_login_is_not_output(pushbutton, write_jobs, lab, servers):
    pb = pushbutton(jobs(write_jobs, sshd.host_section(lab, servers["h3"], "h3", identity=lab.other_key), """
        [job:nothing]
        command = true
        targets = host:h3
        """))
    run_id = pb.start_run("nothing")["id"]
    run = pb.wait(run_id)
    assert lines_of(pb.events(run_id)) == [f"pushbutton: {run['hosts'][0]['error']}"]


def test_a_host_that_ends_the_login_before_the_command_says_why(pushbutton, write_jobs):
    """What the server printed before the command is not output, but it is the only clue when the
    command never starts: its last line joins the host's error."""
    lab = sshd.Lab()
    try:
        locked = lab.start("locked", extra="ForceCommand echo 'This account is disabled.' >&2; exit 1\n")
        sshd.write_known_hosts(lab)
        pb = pushbutton(jobs(write_jobs, sshd.host_section(lab, locked), """
            [job:hello]
            command = echo hello
            targets = host:locked
            """))
        run_id = pb.start_run("hello")["id"]
        run = pb.wait(run_id)
        error = run["hosts"][0]["error"]  # the lab's banner has no final newline: it shares the line
        assert run["state"] == "failed" and error.startswith("error: ssh ended before the command started (exit 1): ")
        assert error.endswith("This account is disabled.")
        assert lines_of(pb.events(run_id)) == [f"pushbutton: {error}"]
    finally:
        lab.close()


def test_a_long_tmpdir_does_not_stop_remote_runs(pushbutton, write_jobs, hosts_ini, tmp_path, monkeypatch):
    """A Unix socket's path holds at most 107 bytes: with a long TMPDIR, the run's control sockets
    (and the window's askpass socket) are made under /tmp instead."""
    long = tmp_path / ("t" * 40) / ("m" * 40)
    long.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(long))
    pb = pushbutton(jobs(write_jobs, hosts_ini, """
        [job:two]
        command = sh -c 'echo "on $TESTHOST"'
        targets = host:h1, host:h2
        """))
    run_id = pb.start_run("two")["id"]
    assert pb.wait(run_id)["state"] == "succeeded", pb.run(run_id)
    assert sorted(lines_of(pb.events(run_id))) == ["on h1", "on h2"]
