"""A real OpenLDAP directory for the LDAP sign-in tests: Debian's `slapd` started as a child process
in a temp dir, on free ports (ldap:// with StartTLS, and ldaps://), with a generated slapd.conf
(mdb database, schemas core, cosine, inetorgperson, nis; the memberof overlay, as Active Directory
keeps `memberOf`), a test CA and server certificate made by `openssl`, and users and groups loaded
by `ldapadd` (so the overlay sees them). Nothing of Debian's own slapd configuration is used.

`allow bind_anon_dn` makes this directory accept a user DN with an empty password as an
anonymous bind, as many directories do: a sign-in that forgot to refuse empty passwords would pass.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SLAPD = "/usr/sbin/slapd"
BASE = "dc=acme,dc=test"
ROOT_DN = f"cn=admin,{BASE}"
ROOT_PW = "root-secret-not-for-pushbutton"
SERVICE_DN = f"cn=pushbutton,ou=services,{BASE}"
SERVICE_PW = "svc-bind-Secret-7f3a9c"  # tests look for it in logs and the data dir: it must never appear
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
INJECTION = "a*)(uid=*"  # a real user whose name is an injection attempt
BACKSLASH = "bob\\("  # a real user whose name (and DN) holds a backslash and a parenthesis

# uid -> (RDN under ou=people, password, groups)
USERS = {
    "alice": ("uid=alice", "alice-pw-1", ["analysts"]),
    "olga": ("uid=olga", "olga-pw-2", ["ops"]),
    "nick": ("uid=nick", "nick-pw-3", []),
    "ann": ("uid=ann", "ann-pw-4", ["analysts"]),
    "vic": ("uid=vic", "vic-pw-5", ["viewers"]),
    "otto": ("uid=otto", "otto-pw-6", ["others"]),
    INJECTION: ("cn=Injection Test", "inject-pw-7", []),
    BACKSLASH: ("cn=bob\\5C\\28", "bob-pw-8", ["analysts"]),  # DN value `bob\(`, escaped per RFC 4514
}
GROUP_NAMES = ("analysts", "ops", "viewers", "others")


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS}"


def user_dn(uid: str) -> str:
    return f"{USERS[uid][0]},{PEOPLE}"


def password(uid: str) -> str:
    return USERS[uid][1]


CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
allow bind_anon_dn
TLSCACertificateFile {dir}/ca.pem
TLSCertificateFile {dir}/server.pem
TLSCertificateKeyFile {dir}/server.key

database mdb
suffix "{base}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/db
maxsize 33554432
overlay memberof
access to attrs=userPassword
  by anonymous auth
  by * none
access to *
  by users read
  by * none
"""


def missing() -> str | None:
    for tool in (SLAPD, "ldapadd", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian packages slapd, ldap-utils, openssl: scripts/setup.sh test installs them)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", key, "-out", cert)
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path]) -> None:
    """server.pem / server.key for 127.0.0.1 and localhost, signed by `ca`."""
    ext = folder / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", folder / "server.key",
             "-out", folder / "server.csr")
    _openssl("x509", "-req", "-in", folder / "server.csr", "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-extfile", ext, "-out", folder / "server.pem")
    (folder / "server.key").chmod(0o644)  # slapd may drop privileges; it only has to read it


def _openssl(*args) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def ldif() -> str:
    out = [f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: acme\no: Acme\n"]
    for ou in ("people", "groups", "services"):
        out.append(f"dn: ou={ou},{BASE}\nobjectClass: organizationalUnit\nou: {ou}\n")
    out.append(f"dn: {SERVICE_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
               f"cn: pushbutton\nuserPassword: {SERVICE_PW}\n")
    for uid, (rdn, pw, _groups) in USERS.items():
        cn = rdn.split("=", 1)[1] if rdn.startswith("cn=") else uid
        out.append(f"dn: {rdn},{PEOPLE}\nobjectClass: inetOrgPerson\ncn: {cn}\nsn: {cn}\nuid: {uid}\n"
                   f"userPassword: {pw}\n")
    for group in GROUP_NAMES:
        members = "".join(f"member: {user_dn(uid)}\n" for uid, (_, _, gs) in USERS.items() if group in gs)
        out.append(f"dn: {group_dn(group)}\nobjectClass: groupOfNames\ncn: {group}\n{members}")
    return "\n".join(out)


@dataclass
class Slapd:
    """One directory: `url` (ldap://, StartTLS offered) and `ldaps_url`; `ca` is the CA that signed
    its certificate, `other_ca` one that did not."""

    dir: Path
    port: int = 0
    ldaps_port: int = 0
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def other_ca(self) -> Path:
        return self.dir / "other-ca.pem"

    def setup(self) -> Slapd:
        self.dir.chmod(0o755)
        (self.dir / "db").mkdir()
        make_server_cert(self.dir, make_ca(self.dir, "ca"))
        make_ca(self.dir, "other-ca")
        (self.dir / "slapd.conf").write_text(CONFIG.format(dir=self.dir, base=BASE, root_dn=ROOT_DN, root_pw=ROOT_PW))
        self.start()
        (self.dir / "data.ldif").write_text(ldif())
        done = subprocess.run(["ldapadd", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-f",
                               str(self.dir / "data.ldif")], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"ldapadd failed: {done.stderr}")
        return self

    def start(self) -> None:
        """Start (again, on the same ports once chosen): returns when both ports accept."""
        for _attempt in range(5):  # a free port may be taken before slapd binds it
            self.port = self.port or free_port()
            self.ldaps_port = self.ldaps_port or free_port()
            with open(self.dir / "slapd.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [SLAPD, "-d", "0", "-f", str(self.dir / "slapd.conf"), "-h", f"{self.url}/ {self.ldaps_url}/"],
                    stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _accepts(self.port) and _accepts(self.ldaps_port):
                    return
                time.sleep(0.02)
            self.stop()
            self.port = self.ldaps_port = 0
        raise RuntimeError(f"slapd did not start: {(self.dir / 'slapd.log').read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start() -> Slapd:
    return Slapd(Path(tempfile.mkdtemp(prefix="pb-slapd-"))).setup()
