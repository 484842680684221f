"""Host keys pinned in jobs.ini (`[host:NAME] host_key`) against real sshd: only the pinned keys
are trusted, a different one fails that host before anything is sent, `hosts --keys` prints the
lines to pin, and `check` refuses a malformed key."""

from __future__ import annotations

import base64
import struct
import subprocess
import textwrap

from server.catalog_hosts import Host
from server.executors.host_keys import alias
from server.executors.ssh_client import Client, ssh_argv
from tests.helpers import BIN
from tests.ssh import sshd


def jobs(write_jobs, hosts_ini: str, text: str):
    return write_jobs(hosts_ini + textwrap.dedent(text))


def test_a_pinned_key_is_trusted_without_any_known_hosts_entry(pushbutton, write_jobs, lab, servers):
    h1 = servers["h1"]
    empty = lab.known_hosts("pinned_empty", [])
    pb = pushbutton(jobs(write_jobs, sshd.host_section(lab, h1, "h1", known_hosts=empty, host_key=h1.host_key), """
        [job:who]
        command = sh -c 'echo "on $TESTHOST"'
        targets = host:h1
        """))
    run_id = pb.start_run("who")["id"]
    pb.events(run_id)
    run = pb.run(run_id)
    assert run["state"] == "succeeded", run
    assert empty.read_text() == ""  # nothing learnt, nothing written


def test_a_different_key_fails_that_host_before_anything_runs(pushbutton, write_jobs, lab, servers):
    h1, h2 = servers["h1"], servers["h2"]
    mark = lab.scratch / "pinned-wrong-ran"
    # known_hosts would accept h1: the pin alone decides
    hosts_ini = (sshd.host_section(lab, h1, "pinned_wrong", host_key=lab.other_public)
                 + sshd.host_section(lab, h2, "pinned_right", host_key=h2.host_key))
    pb = pushbutton(jobs(write_jobs, hosts_ini, f"""
        [job:touch]
        command = sh -c 'touch {mark}-$TESTHOST'
        targets = host:pinned_wrong, host:pinned_right
        """))
    logins = h1.logins(lab.user_key)
    run_id = pb.start_run("touch")["id"]
    pb.events(run_id)
    hosts = {h["name"]: h for h in pb.run(run_id)["hosts"]}
    wrong, right = hosts["pinned_wrong"], hosts["pinned_right"]
    assert wrong["state"] == "failed"
    assert wrong["error"].startswith("host key changed: the server's identity changed; tell ops; nothing was run.")
    assert sshd.fingerprint(h1.dir / "host_key.pub") in wrong["error"]  # what was offered, for ops
    assert right["state"] == "succeeded", right
    assert h1.logins(lab.user_key) == logins  # never authenticated
    assert not (lab.scratch / "pinned-wrong-ran-h1").exists()
    assert (lab.scratch / "pinned-wrong-ran-h2").exists()


def test_hosts_probe_uses_the_pins(write_jobs, lab, servers):
    h1 = servers["h1"]
    empty = lab.known_hosts("probe_empty", [])
    path = jobs(write_jobs, sshd.host_section(lab, h1, "good", known_hosts=empty, host_key=h1.host_key)
                + sshd.host_section(lab, h1, "bad", host_key=lab.other_public), "[job:x]\ncommand = true\n")
    out = subprocess.run([BIN, "hosts", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    rows = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "reachable" in rows["good"], out.stdout
    assert "the server's identity changed; tell ops; nothing was run" in rows["bad"], out.stdout
    assert out.returncode == 1


def test_hosts_keys_prints_lines_that_pin_the_host(write_jobs, lab, servers, pushbutton):
    h1, h2 = servers["h1"], servers["h2"]
    empty = lab.known_hosts("keys_empty", [])
    unpinned = sshd.host_section(lab, h1, "fresh", known_hosts=empty)
    hosts_ini = unpinned + sshd.host_section(lab, h2, "pinned", host_key=h2.host_key) \
        + sshd.host_section(lab, h1, "stale", host_key=lab.other_public)
    path = jobs(write_jobs, hosts_ini, "[job:x]\ncommand = true\n")
    out = subprocess.run([BIN, "hosts", "--keys", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr  # `stale` offers a key that differs from its pin
    assert "out of band" in out.stdout
    blocks = {block.split("]")[0]: block for block in out.stdout.split("\n[host:")[1:]}
    h1_print = sshd.fingerprint(h1.dir / "host_key.pub")
    assert f"{h1_print}  new" in blocks["fresh"]
    assert f"{sshd.fingerprint(h2.dir / 'host_key.pub')}  pinned" in blocks["pinned"]
    assert f"{h1_print}  differs" in blocks["stale"]
    line = next(row for row in blocks["fresh"].splitlines() if row.startswith("host_key = "))
    assert line == f"host_key = {h1.host_key}"

    mark = lab.scratch / "pasted-ran"
    pb = pushbutton(jobs(write_jobs, unpinned + line + "\n", f"""
        [job:touch]
        command = touch {mark}
        targets = host:fresh
        """))
    run_id = pb.start_run("touch")["id"]
    pb.events(run_id)
    assert pb.run(run_id)["state"] == "succeeded"
    assert mark.exists()


def test_hosts_keys_fails_a_host_that_offers_none_of_its_pinned_keys_even_of_another_type(write_jobs, lab, servers,
                                                                                          tmp_path):
    """A host offering only keys of types nobody pinned: each run there fails the pin (or someone
    is intercepting with another key type); the scan must not look clean."""
    h1 = servers["h1"]
    ecdsa = tmp_path / "ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-C", "", "-f", str(ecdsa)], check=True)
    pin = " ".join(ecdsa.with_suffix(".pub").read_text().split()[:2])
    path = jobs(write_jobs, sshd.host_section(lab, h1, "moved", host_key=pin), "[job:x]\ncommand = true\n")
    out = subprocess.run([BIN, "hosts", "--keys", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout
    assert f"{sshd.fingerprint(h1.dir / 'host_key.pub')}  new" in out.stdout
    assert "is no longer offered" in out.stdout
    assert "none of its pinned keys is offered" in out.stdout


CERT = "ssh-ed25519-cert-v01@openssh.com"


def wire(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(field)) + field for field in fields)


def test_check_refuses_a_malformed_host_key(write_jobs, lab, servers, tmp_path):
    h1 = servers["h1"]
    ecdsa = tmp_path / "ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-C", "", "-f", str(ecdsa)], check=True)
    ecdsa_public = " ".join(ecdsa.with_suffix(".pub").read_text().split()[:2])
    data = h1.host_key.split()[1]
    good = sshd.host_section(lab, h1, "two", host_key=f"{h1.host_key}, {ecdsa_public}")
    ok = jobs(write_jobs, good, "[job:x]\ncommand = true\n")
    out = subprocess.run([BIN, "check", "--jobs", str(ok)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    bad = {
        "mislabelled": (f"ssh-rsa {data}", "the key data is not a ssh-rsa key"),
        "truncated": (f"ssh-ed25519 {data[:-3]}", "not valid base64"),
        "cut_whole": (f"ssh-ed25519 {data[:60]}", "cut short or damaged"),  # still valid base64
        "run_together": (f"ssh-ed25519 {data}{data}", "cut short or damaged"),
        "certificate": (f"{CERT} {base64.b64encode(wire(CERT.encode(), b'n' * 32, b'k' * 32)).decode()}",
                        "a certificate, not a host key"),
        "no_data": ("ssh-ed25519", "expected TYPE BASE64"),
        "comment": (f"{h1.host_key} root@h1", "expected TYPE BASE64"),
        "empty": (",", "host_key is empty"),
    }
    text = "".join(sshd.host_section(lab, h1, name, host_key=key) for name, (key, _) in bad.items())
    path = jobs(write_jobs, text, "[job:x]\ncommand = true\n")
    out = subprocess.run([BIN, "check", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = path.read_text().splitlines()
    for name, (_key, message) in bad.items():
        section = lines.index(f"[host:{name}]")
        line = section + 1 + next(i for i, row in enumerate(lines[section:]) if row.startswith("host_key"))
        assert f"{path}:{line}: [host:{name}] host_key: " in out.stderr, (name, out.stderr)
        assert message in out.stderr.split(f"[host:{name}] host_key: ")[1].splitlines()[0], (name, out.stderr)


def test_a_known_hosts_command_in_the_users_ssh_config_cannot_widen_a_pin(lab, servers, tmp_path):
    """A user's `KnownHostsCommand` (or SSHFP records, `VerifyHostKeyDNS`) would otherwise be asked
    too, and could vouch for a key the pin does not name."""
    h1 = servers["h1"]
    host = Host(name="h1", address="127.0.0.1", port=h1.port, user=sshd.USER, identity=lab.user_key,
                host_keys=(lab.other_public,))  # not h1's key
    vouches = tmp_path / "vouches"
    vouches.write_text(f"{alias(host)} {h1.host_key}\n")  # h1's real key, under the pin's name
    config = tmp_path / "ssh_config"
    config.write_text(f"Host *\n  KnownHostsCommand /bin/cat {vouches}\n  VerifyHostKeyDNS yes\n")

    def ran(argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([argv[0], "-F", str(config), *argv[1:]], capture_output=True, text=True, timeout=30)

    # the config really vouches: ssh without Pushbutton's pin options trusts h1 on its word
    plain = ["ssh", "-o", "BatchMode=yes", "-o", f"HostKeyAlias={alias(host)}", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "GlobalKnownHostsFile=none", "-o", "StrictHostKeyChecking=yes", "-i", str(lab.user_key),
             "-p", str(h1.port), "-l", sshd.USER, "127.0.0.1", "echo ran"]
    assert ran(plain).stdout == "ran\n"
    # Pushbutton's command line for the pinned host: the pin alone decides
    tmp_path.joinpath("work").mkdir()
    pinned = ran(ssh_argv(host, "echo ran", tmp_path / "work" / "log", client=Client()))
    assert pinned.returncode == 255 and pinned.stdout == ""
    assert "Host key verification failed" in (tmp_path / "work" / "log").read_text()
