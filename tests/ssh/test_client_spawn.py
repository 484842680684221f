"""How ssh clients are started (server/executors/ssh_client.py): where a fan-out's clients run,
for a server run by someone other than root: at the lowest priority, and never as scheduling
groups of their own that outweigh the window and the page (ssh_client.background). Linux lets a
user without CAP_SYS_ADMIN lower a session's group ("autogroup") once per 100 ms, so root's view
of this proves nothing; the spawns here run as the lab's login user when the suite runs as root.
And what they ask ssh itself before the first connection, once."""

from __future__ import annotations

import json
import os
import pty
import pwd
import subprocess
import sys
from pathlib import Path

from tests.ssh import sshd

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 8  # started back to back: well within one 100 ms window

SPAWNER = f"""
import fcntl, json, os, subprocess, sys, termios
import gevent
from server.executors import ssh_client
from tests.helpers import scheduling

if sys.argv[1] == "terminal":
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # stdin, a pty: this session's terminal from now on
elif sys.argv[1] != "":  # a user's uid:gid: root's Python may live where others cannot run it,
    uid, gid = map(int, sys.argv[1].split(":"))  # so it starts as root, imports, then becomes them
    gevent.get_hub().threadpool.apply(int)  # the hub and its threads load more of the library
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    assert os.geteuid() == uid


procs = [ssh_client.spawn(["sleep", "30"], subprocess.DEVNULL, subprocess.DEVNULL) for _ in range({CLIENTS})]
try:
    print(json.dumps({{"server": scheduling(os.getpid()), "euid": os.geteuid(), "terminal": ssh_client.has_terminal(),
                      "clients": [dict(scheduling(p.pid), pid=p.pid) for p in procs]}}))
finally:
    for p in procs:
        p.kill()
        p.wait()
"""


def fresh_process(code: str, *args: str, stdin=subprocess.DEVNULL) -> dict:
    """`code` run by a fresh Python (a server process's first moments), what it printed as JSON.
    A session of its own: no terminal unless `stdin` makes one."""
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, stdin=stdin,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=120, start_new_session=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_without_a_terminal_a_users_ssh_clients_share_the_servers_group_at_the_lowest_priority():
    """The desktop app's case: on the old code (a session per client, then lowering its group),
    seven clients of eight kept a whole session's weight, as many as the window's."""
    user = ""
    if os.geteuid() == 0:
        sshd.ensure_user()
        account = pwd.getpwnam(sshd.USER)
        user = f"{account.pw_uid}:{account.pw_gid}"
    seen = fresh_process(SPAWNER, user)
    server = seen["server"]
    assert seen["terminal"] is False and seen["euid"] != 0
    assert len(seen["clients"]) == CLIENTS
    for client in seen["clients"]:
        assert client["nice"] == 19, client
        assert client["pgid"] == client["pid"], client  # killable as a group, with what it starts
        assert client["sid"] == server["sid"], client
        assert client["group"] == server["group"], client
    if server["group"] is not None:
        assert server["group_nice"] == 0  # the server's and window's group is never lowered


def test_with_a_terminal_each_ssh_client_has_a_session_of_its_own_and_cannot_read_it():
    """`pushbutton run` or a server started from a shell: no client may read the terminal (it would
    be stopped by SIGTTIN, hanging the run), so each is a session of its own, without a terminal,
    and its group is lowered as far as Linux allows (for root, all of them)."""
    leader, follower = pty.openpty()
    try:
        seen = fresh_process(SPAWNER, "terminal", stdin=follower)
    finally:
        os.close(leader)
        os.close(follower)
    server = seen["server"]
    assert seen["terminal"] is True and server["tty"] != 0
    lowered = 0
    for client in seen["clients"]:
        assert client["nice"] == 19, client
        assert client["sid"] == client["pgid"] == client["pid"], client
        assert client["tty"] == 0, client  # no controlling terminal: /dev/tty cannot be opened
        if client["group"] is not None:
            assert client["group"] != server["group"], client
            lowered += client["group_nice"] == 19
    if server["group"] is not None and os.geteuid() == 0:  # others: as the 100 ms limit allows
        assert lowered == CLIENTS


ASKING = """
import json, gevent
from server.executors import ssh_client

asked, real = [], ssh_client._ask_client
ssh_client._ask_client = lambda: asked.append(1) or real()  # counts the asking it starts
hosts = [gevent.spawn(ssh_client.capabilities) for _ in range(20)]
gevent.joinall(hosts, timeout=60, raise_error=True)
print(json.dumps({"asked": len(asked), "answers": [list(host.value) for host in hosts]}))
"""


def test_the_hosts_of_a_first_fan_out_ask_ssh_about_its_options_once():
    """capabilities() starts `ssh -G`: 100 hosts asking at once, before the first answer, started 100.
    In a fresh server process, as on its first fan-out."""
    seen = fresh_process(ASKING)
    assert seen["asked"] == 1
    assert seen["answers"] == [[True, True]] * 20  # this machine's OpenSSH knows `^` and KnownHostsCommand
