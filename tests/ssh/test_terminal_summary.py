"""`pushbutton run` of a remote job ends with the per-host summary the page shows: one line per
host (name, state, exit code, error) and the count per state, against real sshd hosts."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import BIN
from tests.ssh import sshd


def test_terminal_run_prints_each_hosts_outcome_and_the_counts(write_jobs, hosts_ini, lab, tmp_path):
    down = sshd.Sshd("down", sshd.free_port(), lab.root, "", None)  # nothing listens there
    path = write_jobs(hosts_ini + sshd.host_section(lab, down, "down") + """
[job:mixed]
command = sh -c 'echo "out $TESTHOST"; [ "$TESTHOST" != h2 ] || exit 3'
targets = host:h1, host:h2, host:down
""")
    done = subprocess.run([BIN, "run", "mixed", "--jobs", str(path), "--data-dir", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr[-3000:]
    assert sorted(done.stdout.splitlines()) == ["[h1] out h1", "[h2] out h2"]
    tail = done.stderr.splitlines()[-5:]
    assert tail[0] == "pushbutton: hosts:"
    assert tail[1] == "  h1    succeeded    exit 0"
    assert tail[2] == "  h2    failed       exit 3"
    assert re.fullmatch(r"  down  unreachable  exit -    refused: nothing accepts SSH connections on "
                        r"127\.0\.0\.1:\d+", tail[3]), tail[3]
    assert tail[4] == "  1 succeeded · 1 failed · 1 unreachable"
