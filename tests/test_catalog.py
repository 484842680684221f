"""jobs.ini parsing and every `check` problem, each with its file and line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from server import catalog as C
from server.params import TYPES
from tests.helpers import BIN

ROOT = Path(__file__).resolve().parent.parent


def problems(write_jobs, text: str) -> list[str]:
    path = write_jobs(text)
    with pytest.raises(C.CatalogError) as info:
        C.load(path)
    return [str(p).replace(str(path), "FILE") for p in info.value.problems]


def test_sample_jobs_ini_is_valid_and_shows_every_parameter_type():
    catalog = C.load(ROOT / "jobs.ini")
    types = {p.type for job in catalog.jobs.values() for p in job.params}
    assert types == set(TYPES)
    assert any(job.confirm for job in catalog.jobs.values())
    assert any(job.shell for job in catalog.jobs.values())


def test_values_keep_semicolons_hashes_percent_and_dollar(write_jobs):
    catalog = C.load(write_jobs("""
        [job:a]
        ; a whole-line comment
        # another
        command = date +%Y ; echo "#1 $HOME"
        description = costs 5% ; maybe
        """))
    assert catalog.jobs["a"].argv == ["date", "+%Y", ";", "echo", "#1 $HOME"]
    assert catalog.jobs["a"].description == "costs 5% ; maybe"


def test_full_job_is_read(write_jobs, tmp_path):
    (tmp_path / "scripts").mkdir()
    catalog = C.load(write_jobs("""
        [pushbutton]
        title = Acme Ops
        max_concurrent_runs = 3
        retention_days = 7
        allowed_hosts = pb.example.com, Other.Example

        [job:deploy]
        title = Deploy
        command = ./deploy.sh --env {env} --tag={tag} {targets}
        workdir = scripts
        env.DEPLOY_COLOR = blue
        timeout = 1h30m
        grace = 3s
        concurrency = 1
        confirm = Deploy {tag} to {env}?
        param.env.type = choice
        param.env.choices = staging, production
        param.env.default = staging
        param.tag.required = yes
        param.tag.pattern = ^v[0-9]+$
        param.targets.type = multichoice
        param.targets.choices = a, b
        param.token.type = secret
        """))
    s = catalog.settings
    assert (s.title, s.max_concurrent_runs, s.retention_days) == ("Acme Ops", 3, 7)
    assert s.allowed_hosts == ["pb.example.com", "other.example"]
    job = catalog.jobs["deploy"]
    assert job.argv == ["./deploy.sh", "--env", "{env}", "--tag={tag}", "{targets}"]
    assert job.workdir == tmp_path / "scripts"
    assert job.env == {"DEPLOY_COLOR": "blue"}
    assert (job.timeout, job.grace, job.concurrency) == (5400, 3, 1)
    assert [p.name for p in job.params] == ["env", "tag", "targets", "token"]  # order of first key
    assert job.params[0].default == "staging"
    assert job.params[1].type == "text" and job.params[1].required


def test_multiline_command_continues_on_indented_lines(write_jobs):
    catalog = C.load(write_jobs("""
        [job:a]
        command = printf '%s\\n'
            one
            two
        """))
    assert catalog.jobs["a"].argv == ["printf", "%s\\n", "one", "two"]


LDAP = "[pushbutton]\nauth = ldap\nadmins = a\nldap_url = ldaps://dir.test\nldap_user_base = dc=t\n"
BAD = [
    ("[job:a]\ncommand = x\nfoo = 1\n", "FILE:3: [job:a] foo: unknown key"),
    ("[pushbutton]\ncolour = red\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] colour: unknown key"),
    ("[jobs:a]\ncommand = x\n", "FILE:1: [jobs:a]: unknown section"),
    ("[job:a]\ncommand = x\n[job:a]\ncommand = y\n", "FILE:3: duplicate section [job:a]"),
    ("[job:a]\ncommand = x\ncommand = y\n", "FILE:3: [job:a] duplicate key 'command'"),
    ("[job:a]\ntitle = x\n", "FILE:1: [job:a]: missing command"),
    ("[job:a]\ncommand = x {nope}\n", "FILE:2: [job:a] command: {nope} names no parameter"),
    ("[job:a]\ncommand = x 'open\n", "FILE:2: [job:a] command: cannot split command"),
    ("[job:a]\ncommand = x {t}\nparam.t.type = secret\n", "FILE:2: [job:a] command: secret {t} in the command line"),
    ("[job:a]\ncommand = x\nparam.t.type = colour\n", "FILE:3: [job:a] param.t.type: unknown type 'colour'"),
    ("[job:a]\ncommand = x\nparam.t.colour = red\n", "FILE:3: [job:a] param.t.colour: unknown parameter key"),
    ("[job:a]\ncommand = x\nparam.t.pattern = (\n", "FILE:3: [job:a] param.t.pattern: bad pattern"),
    ("[job:a]\ncommand = x\nparam.t.type = choice\nparam.t.choices = a, b\nparam.t.default = c\n",
     "FILE:5: [job:a] param.t.default: default is not among the choices"),
    ("[job:a]\ncommand = x\nparam.t.type = multichoice\nparam.t.choices = a, b\nparam.t.default = a, z\n",
     "FILE:5: [job:a] param.t.default: default is not among the choices"),
    ("[job:a]\ncommand = x\nparam.t.type = choice\n", "FILE:3: [job:a] param.t.type: a choice parameter needs"),
    ("[job:a]\ncommand = x\nparam.t.choices = a\n", "FILE:3: [job:a] param.t.choices: choices only apply"),
    ("[job:a]\ncommand = x\nparam.n.type = int\nparam.n.min = ten\n", "FILE:4: [job:a] param.n.min: must be a whole"),
    ("[job:a]\ncommand = x\nparam.n.type = int\nparam.n.min = 5\nparam.n.max = 1\n",
     "FILE:5: [job:a] param.n.max: max is below min"),
    ("[job:a]\ncommand = x\nparam.n.type = int\nparam.n.max = 5\nparam.n.default = 9\n",
     "FILE:5: [job:a] param.n.default: default must be at most 5"),
    ("[job:a]\ncommand = x\nparam.n.min = 1\n", "FILE:3: [job:a] param.n.min: min only applies"),
    ("[job:a]\ncommand = x\nparam.n.type = int\nparam.n.pattern = x\n", "FILE:4: [job:a] param.n.pattern: pattern"),
    ("[job:a]\ncommand = x\nparam.d.type = date\nparam.d.default = 2024-02-30\n", "FILE:4: [job:a] param.d.default"),
    ("[job:a]\ncommand = x\nparam.s.type = secret\nparam.s.default = hunter2\n",
     "FILE:4: [job:a] param.s.default: a secret cannot have a default"),
    ("[job:a]\ncommand = x\nparam.t.required = maybe\n", "FILE:3: [job:a] param.t.required: 'maybe' is not yes or no"),
    ("[job:a]\ncommand = x\nparam.9x.type = text\n", "FILE:3: [job:a] param.9x.type: expected param.NAME.KEY"),
    ("[job:a]\ncommand = x\ntimeout = soon\n", "FILE:3: [job:a] timeout: 'soon' is not a duration"),
    ("[job:a]\ncommand = x\ntimeout = 0s\n", "FILE:3: [job:a] timeout: must be longer than 0s"),
    ("[job:a]\ncommand = x\nconcurrency = 0\n", "FILE:3: [job:a] concurrency: must be at least 1"),
    ("[job:a]\ncommand = x\nshell = maybe\n", "FILE:3: [job:a] shell: 'maybe' is not yes or no"),
    ("[job:a]\ncommand = x\nworkdir = missing-dir\n", "FILE:3: [job:a] workdir: folder"),
    ("[job:a]\ncommand = x\nenv.1BAD = y\n", "FILE:3: [job:a] env.1BAD: not a valid environment variable name"),
    ("[job:a]\ncommand = echo {x}\nshell = yes\nparam.x.type = text\n", "FILE:2: [job:a] command: shell = yes"),
    ("[job:a]\ncommand = x\nconfirm = Sure {who}?\n", "FILE:3: [job:a] confirm: {who} names no parameter"),
    ("[job:a]\ncommand = x\nconfirm = {s}?\nparam.s.type = secret\n", "FILE:3: [job:a] confirm: the confirm text"),
    ("[pushbutton]\nmax_concurrent_runs = lots\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] max_concurrent_runs: 'lots' is not a whole number"),
    ("[pushbutton]\nretention_days = -1\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] retention_days: must be at least 0"),
    ("[job:bad id]\ncommand = x\n", "FILE:1: [job:bad id]: job id starts with a letter or digit"),
    ("[job:_x]\ncommand = x\n", "FILE:1: [job:_x]: job id starts with a letter or digit"),
    ("[notify:bad name!]\nurl = json://localhost/\n[job:a]\ncommand = x\n",
     "FILE:1: [notify:bad name!]: notifier name starts with a letter or digit"),
    ("[pushbutton]\ntitle = x\n", "FILE:1: no [job:ID] section"),
    ("command = x\n", "FILE:1: text before the first [section]"),
    ("[job:a]\ncommand = x\nthis line has no equals sign\n", "FILE:3: cannot parse this line has no equals sign"),
    # a URL on a line of its own (a continuation not indented) may hold a password: not echoed
    ("[job:a]\ncommand = x\nhttps://bob:Pa55word@example.com/hook\n",
     "FILE:3: cannot parse (a line holding a URL, not shown): expected key = value"),
    ("[notify:n]\nurls = json://localhost/\njson://bob:Pa55word@example.com/h?+X-Key=Pa55word\n[job:a]\ncommand = x\n",
     "FILE:3: [notify:n] (a line holding a URL, not shown): unknown key"),
    # a choice or default that would begin an argument with '-' (docs/jobs-ini.md)
    ("[job:a]\ncommand = x {v}\nparam.v.type = choice\nparam.v.choices = -v, -q\n",
     "FILE:4: [job:a] param.v.choices: choice '-v' starts with '-' and {v} can begin an argument"),
    ("[job:a]\ncommand = x\nparam.v.type = multichoice\nparam.v.choices = a, --all\n",
     "FILE:4: [job:a] param.v.choices: choice '--all' starts with '-'"),
    ("[job:a]\ncommand = x {f}\nparam.f.default = -rf\n",
     "FILE:3: [job:a] param.f.default: default must not start with '-' (it would be read as an option); "
     "if that is meant, set param.f.allow_dash = yes"),
    ("[job:a]\nshell = yes\ncommand = sleep $PB_N\nparam.n.type = int\nparam.n.default = -1\n",
     "FILE:5: [job:a] param.n.default: default must not be negative here"),
    ("[job:a]\ncommand = x {f}\nparam.f.allow_dash = maybe\n", "FILE:3: [job:a] param.f.allow_dash: 'maybe' is not"),
    # teams and rights (docs/jobs-ini.md, Teams and rights)
    ("[pushbutton]\nauth = kerberos\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] auth: 'kerberos' is not one of"),
    ("[job:a]\ncommand = x\nrun_by = team:nobody\n", "FILE:3: [job:a] run_by: team:nobody names no [team:nobody]"),
    ("[job:a]\ncommand = x\nview_by = alice, two words\n", "FILE:3: [job:a] view_by: 'two words' is not a user"),
    ("[pushbutton]\nadmins = team:ops\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] admins: team:ops names no"),
    ("[team:ops]\nmembers = team:other\n[job:a]\ncommand = x\n", "FILE:2: [team:ops] members: 'team:other' is not"),
    ("[team:ops]\ncolour = red\n[job:a]\ncommand = x\n", "FILE:2: [team:ops] colour: unknown key"),
    ("[pushbutton]\nauth = header\nadmins = ann\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] auth: auth = header needs trusted_proxies"),
    ("[pushbutton]\ntrusted_proxies = 10.0.0.0/8, proxy.local\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] trusted_proxies: 'proxy.local' is not an IP address"),
    ("[pushbutton]\nsession_idle = never\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] session_idle: 'never' is not"),
    ("[pushbutton]\nbase_path = /ops?x\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] base_path: '/ops?x' is not"),
    ("[pushbutton]\nbase_path = /ops/../x\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] base_path: '/ops/../x' is"),
    ("[pushbutton]\ncertfile = missing.pem\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] certfile: cannot read"),
    ("[pushbutton]\nuser_header = X User\n[job:a]\ncommand = x\n", "FILE:2: [pushbutton] user_header: 'X User' is not"),
    # OpenID Connect (docs/jobs-ini.md, OpenID Connect)
    ("[pushbutton]\noidc_issuer = http://login.acme.test/realms/a\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] oidc_issuer: 'http://login.acme.test/realms/a': an issuer must use https://"),
    ("[pushbutton]\noidc_issuer = https://login.acme.test/?realm=a\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] oidc_issuer: 'https://login.acme.test/?realm=a' is not an issuer URL"),
    ("[pushbutton]\nauth = oidc\nadmins = a\noidc_client_id = pb\noidc_client_secret_file = jobs.ini\n"
     "[job:a]\ncommand = x\n", "FILE:2: [pushbutton] auth: auth = oidc needs oidc_issuer"),
    ("[pushbutton]\nauth = oidc\nadmins = a\noidc_issuer = https://login.acme.test\noidc_client_id = pb\n"
     "[job:a]\ncommand = x\n", "FILE:2: [pushbutton] auth: auth = oidc needs the client secret"),
    ("[pushbutton]\noidc_client_secret_file = missing.txt\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] oidc_client_secret_file: cannot read"),
    ("[pushbutton]\nauth = oidc\nadmins = a\noidc_issuer = https://l.test\noidc_client_id = pb\n"
     "oidc_client_secret = s3cret-value\noidc_client_secret_file = jobs.ini\n[job:a]\ncommand = x\n",
     "FILE:6: [pushbutton] oidc_client_secret: set oidc_client_secret or oidc_client_secret_file, not both"),
    ("[pushbutton]\noidc_scopes = openid \"groups\"\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] oidc_scopes: 'openid \"groups\"' is not a space-separated list of scopes"),
    ("[pushbutton]\noidc_groups_claim = two words\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] oidc_groups_claim: 'two words' is not a claim name"),
    # auth = ldap (docs/jobs-ini.md, LDAP); LDAP is a valid [pushbutton] of 5 lines
    ("[pushbutton]\nauth = ldap\nadmins = a\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] auth: auth = ldap needs ldap_url"),
    ("[pushbutton]\nauth = ldap\nldap_url = http://dir.test\n[job:a]\ncommand = x\n",
     "FILE:3: [pushbutton] ldap_url: 'http://dir.test' is not an ldap:// or ldaps:// URL"),
    ("[pushbutton]\nldap_url = ldap://dir.test/ou=x?uid\n[job:a]\ncommand = x\n",
     "FILE:2: [pushbutton] ldap_url: 'ldap://dir.test/ou=x?uid': only ldap[s]://HOST[:PORT]"),
    (LDAP + "ldap_starttls = maybe\n[job:a]\ncommand = x\n", "FILE:6: [pushbutton] ldap_starttls: 'maybe' is not yes"),
    (LDAP + "ldap_ca_file = missing.pem\n[job:a]\ncommand = x\n", "FILE:6: [pushbutton] ldap_ca_file: cannot read"),
    (LDAP + "ldap_user_filter = (uid=alice)\n[job:a]\ncommand = x\n",
     "FILE:6: [pushbutton] ldap_user_filter: '(uid=alice)' has no {user}"),
    (LDAP + "ldap_user_filter = (uid={user}\n[job:a]\ncommand = x\n",
     "FILE:6: [pushbutton] ldap_user_filter: '(uid={user}' is not an LDAP filter"),
    (LDAP + "ldap_group_base = ou=g,dc=t\nldap_group_filter = member={dn}\n[job:a]\ncommand = x\n",
     "FILE:7: [pushbutton] ldap_group_filter: 'member={dn}' is not an LDAP filter"),
    (LDAP + "ldap_group_filter = (member={dn})\n[job:a]\ncommand = x\n",
     "FILE:6: [pushbutton] ldap_group_filter: ldap_group_filter needs ldap_group_base"),
    (LDAP + "ldap_bind_dn = not a dn\n[job:a]\ncommand = x\n", "FILE:6: [pushbutton] ldap_bind_dn: 'not a dn' is not"),
    (LDAP + "ldap_bind_dn = cn=svc,dc=t\n[job:a]\ncommand = x\n",
     "FILE:6: [pushbutton] ldap_bind_dn: the bind DN needs its password"),
    (LDAP + "ldap_bind_dn = cn=svc,dc=t\nldap_bind_password_file = nope\n[job:a]\ncommand = x\n",
     "FILE:7: [pushbutton] ldap_bind_password_file: cannot read"),
    (LDAP + "ldap_group_base = ou=g,dc=t\nldap_groups_attribute = memberOf\n[job:a]\ncommand = x\n",
     "FILE:7: [pushbutton] ldap_groups_attribute: set ldap_group_base"),
    (LDAP + "ldap_groups_attribute = member of\n[job:a]\ncommand = x\n",
     "FILE:6: [pushbutton] ldap_groups_attribute: 'member of' is not an attribute name"),
    (LDAP + "ldap_timeout = soon\n[job:a]\ncommand = x\n", "FILE:6: [pushbutton] ldap_timeout: 'soon' is not"),
    ("[team:ops]\nldap_groups = cn=ops,dc=t; ops\n[job:a]\ncommand = x\n",
     "FILE:2: [team:ops] ldap_groups: 'ops' is not a DN"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1].split(": ", 1)[1][:40] for b in BAD])
def test_check_names_file_line_and_key(write_jobs, text, expected):
    found = problems(write_jobs, text)
    assert any(p.startswith(expected) for p in found), found
    assert not any("Pa55word" in p for p in found), found  # problems reach the log and the audit


def test_every_problem_is_reported_not_just_the_first(write_jobs):
    found = problems(write_jobs, """
        [job:a]
        command = x {nope}
        colour = red
        [job:b]
        command = y
        timeout = soon
        """)
    assert [p.split(":")[1] for p in found] == ["2", "3", "6"]


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path):
    with pytest.raises(C.CatalogError, match="cannot read"):
        C.load(tmp_path / "absent.ini")


def test_literal_braces_are_written_doubled(write_jobs):
    catalog = C.load(write_jobs("[job:a]\ncommand = awk '{{print $1}}' {f}\nparam.f.type = text\n"))
    assert catalog.jobs["a"].argv == ["awk", "{{print $1}}", "{f}"]


def test_durations():
    assert C.parse_duration("90") == 90
    assert C.parse_duration("1h30m") == 5400
    assert C.parse_duration("2.5s") == 2.5
    with pytest.raises(ValueError):
        C.parse_duration("5 minutes")


def test_jobs_file_is_found_in_the_current_folder_else_user_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with pytest.raises(FileNotFoundError, match="looked in"):
        C.find_jobs_file()
    config = tmp_path / "config" / "pushbutton" / "jobs.ini"
    config.parent.mkdir(parents=True)
    config.write_text("[job:a]\ncommand = x\n")
    assert C.find_jobs_file() == config
    (tmp_path / "jobs.ini").write_text("[job:b]\ncommand = y\n")
    assert C.find_jobs_file() == tmp_path / "jobs.ini"
    assert C.find_jobs_file("/elsewhere/jobs.ini") == Path("/elsewhere/jobs.ini")


def test_every_accepted_key_is_documented():
    docs = (ROOT / "docs" / "jobs-ini.md").read_text()
    documented = set(re.findall(r"`([a-z_.A-Z]+)`", docs))
    keys = set(C.SETTINGS_KEYS) | set(C.JOB_KEYS) | set(C.JOB_PREFIX_KEYS) | set(C.HOST_KEYS) | set(C.GROUP_KEYS)
    keys |= set(C.TEAM_KEYS)
    keys |= {f"param.NAME.{k}" for k in C.PARAM_KEYS}
    missing = sorted(keys - documented)
    assert not missing, f"docs/jobs-ini.md does not document: {missing}"


def test_a_built_app_looks_beside_itself_and_beside_a_macos_bundle(tmp_path, monkeypatch):
    monkeypatch.setattr(C.sys, "frozen", True, raising=False)
    monkeypatch.setattr(C.sys, "executable", str(tmp_path / "pushbutton"))
    assert C.candidate_paths()[0] == tmp_path / "jobs.ini"
    bundle = tmp_path / "Pushbutton.app" / "Contents" / "MacOS"
    bundle.mkdir(parents=True)
    monkeypatch.setattr(C.sys, "executable", str(bundle / "pushbutton"))
    assert C.candidate_paths()[0] == tmp_path / "jobs.ini"


# -- a value never becomes an option ------------------------------------------------------

def test_the_catalog_marks_which_values_could_begin_an_argument(write_jobs):
    catalog = C.load(write_jobs("""
        [job:a]
        command = cp --mode={mode} {src} {dst}.bak -- {after}
        param.mode.type = text
        param.src.type = text
        param.dst.type = text
        param.after.type = text
        param.unnamed.type = text
        [job:b]
        shell = yes
        command = sort -- "$PB_FILE"
        param.file.type = text
        """))
    leads = {p.name: p.leads for job in catalog.jobs.values() for p in job.params}
    # unnamed reaches the program only as $PB_UNNAMED, and a shell script may put $PB_FILE anywhere
    assert leads == {"mode": False, "src": True, "dst": True, "after": False, "unnamed": True, "file": True}
    assert catalog.warnings == []


def test_dashed_choices_and_defaults_are_fine_where_allowed_or_where_they_cannot_lead(write_jobs):
    catalog = C.load(write_jobs("""
        [job:a]
        command = x {v} --level={level} -- {after}
        param.v.type = choice
        param.v.choices = -v, -q
        param.v.default = -q
        param.v.allow_dash = yes
        param.level.type = int
        param.level.default = -3
        param.after.type = text
        param.after.default = -rf
        """))
    assert [p.default for p in catalog.jobs["a"].params] == ["-q", -3, "-rf"]
    assert catalog.warnings == []  # ops listed the choices: nothing to warn about


def test_check_warns_with_file_and_line_where_an_allowed_dash_would_be_read_as_an_option(write_jobs, pushbutton,
                                                                                         tmp_path):
    path = write_jobs("""
        [job:sum]
        command = calc {n} {m} -- {k}
        param.n.type = int
        param.n.allow_dash = yes
        param.m.type = int
        param.m.min = 0
        param.m.allow_dash = yes
        param.k.type = text
        param.k.allow_dash = yes
        [job:script]
        shell = yes
        command = echo "$PB_NOTE"
        param.note.type = multiline
        param.note.allow_dash = yes
        param.token.type = secret
        param.token.allow_dash = yes
        """)
    catalog = C.load(path)
    assert [str(w).replace(str(path), "FILE") for w in catalog.warnings] == [
        "FILE:2: warning: [job:sum] command: {n} begins an argument with no -- before it and "
        "param.n.allow_dash = yes: the program will read a value such as '-x' as an option",
        "FILE:9: warning: [job:sum] param.k.allow_dash: allow_dash has no effect: {k} never begins an argument",
        "FILE:16: warning: [job:script] param.token.allow_dash: allow_dash has no effect: a secret may always "
        "start with '-'",
    ]
    # {m} has min = 0 (never negative), $PB_NOTE is where no one can see: no warning for either
    out = subprocess.run([BIN, "check", "--jobs", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [str(w) for w in catalog.warnings]
    assert "OK, 2 job(s)" in out.stdout
    pushbutton(path).stop()  # a server starts, and logs them
    assert [f"pushbutton: {w}" in (tmp_path / "server.log").read_text() for w in catalog.warnings] == [True] * 3


# -- teams and rights ----------------------------------------------------------------------

def test_teams_admins_and_job_rights_are_read(write_jobs, tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    catalog = C.load(write_jobs("""
        [pushbutton]
        auth = LOCAL
        admins = team:ops, root
        trusted_proxies = 127.0.0.1, 10.0.0.0/8
        session_idle = 30m
        session_max = 1d
        certfile = cert.pem
        keyfile = key.pem
        base_path = ops/tools/

        [team:ops]
        members = olga, omar
        header_groups = sre, platform

        [job:deploy]
        command = x
        run_by = team:ops
        view_by = *, carol
    """))
    s = catalog.settings
    assert (s.auth, s.admins, s.base_path) == ("local", ["team:ops", "root"], "/ops/tools")
    assert [str(n) for n in s.trusted_proxies] == ["127.0.0.1/32", "10.0.0.0/8"]
    assert (s.session_idle, s.session_max) == (1800, 86400)
    assert s.certfile == tmp_path / "cert.pem" and s.keyfile == tmp_path / "key.pem"
    assert catalog.teams["ops"].members == ["olga", "omar"]
    assert catalog.teams["ops"].header_groups == ["sre", "platform"]
    job = catalog.jobs["deploy"]
    assert (job.run_by, job.view_by) == (["team:ops"], ["*", "carol"])


def test_defaults_keep_the_single_user_token_mode(write_jobs):
    catalog = C.load(write_jobs("[job:a]\ncommand = x\n"))
    s = catalog.settings
    assert (s.auth, s.admins, s.trusted_proxies, s.base_path, s.certfile) == ("token", [], [], "", None)
    assert (s.user_header, s.groups_header) == ("X-Forwarded-User", "")
    assert catalog.jobs["a"].run_by == [] and catalog.teams == {} and not catalog.warnings


def test_signing_in_with_nobody_as_admin_is_a_warning_with_its_line(write_jobs):
    catalog = C.load(write_jobs("[pushbutton]\nauth = local\n[job:a]\ncommand = x\nrun_by = *\n"))
    assert [str(w) for w in catalog.warnings] == [
        f"{catalog.path}:1: warning: [pushbutton] admins: nobody is an admin: with auth = local, name the admins "
        "(admins = team:ops, alice), or jobs without run_by/view_by are for nobody"]


def test_two_parameters_that_would_set_one_variable_are_refused(write_jobs):
    found = problems(write_jobs, """
        [job:a]
        command = echo {env} {ENV}
        param.env.type = choice
        param.env.choices = staging, production
        param.ENV.type = text

        [job:b]
        command = wc -l {f}
        param.f_filename.type = text
        param.f.type = file
        """)
    assert found == [
        "FILE:5: [job:a] param.ENV.type: parameters 'env' and 'ENV' would both set $PB_ENV: rename one",
        "FILE:10: [job:b] param.f.type: parameters 'f_filename' and 'f' would both set $PB_F_FILENAME: rename one"]


def test_a_certfile_without_its_keyfile_is_blamed_on_the_line_that_gives_it(write_jobs, tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    found = problems(write_jobs, """
        [pushbutton]
        auth = token
        certfile = cert.pem

        [job:a]
        command = true
        """)
    assert found == ["FILE:3: [pushbutton] certfile: certfile needs keyfile: they go together"]


@pytest.mark.parametrize("command, expected", [
    ("sh -c 'echo {x}'", "{x} is in sh's script, which would run a value such as $(id) as code"),
    ("/bin/bash -ec 'deploy {x}'", "{x} is in bash's script"),
    ("env A=1 python3.11 -c 'print({x})'", "{x} is in python's script"),
    ("perl -e {x}", "{x} is in perl's script"),
    ("{x} --version", "{x} would choose the program to run: make it a choice"),
    ("./tools/{x}.sh", "{x} would choose the program to run"),
    # options read as each program reads them: combined, attached, and the shell's operand after -c
    ("perl -ne 'print if /{x}/'", "{x} is in perl's script"),
    ("perl -lpe 's/a/{x}/'", "{x} is in perl's script"),
    ("perl -e'print q({x})'", "{x} is in perl's script"),
    ("perl -MList::Util=max{x} -e 1", "{x} would choose the program to run"),
    ("python3 -Ic 'print(\"{x}\")'", "{x} is in python's script"),
    ("python3 -m {x}", "{x} would choose the program to run"),
    ("bash -c -- 'echo {x}'", "{x} is in bash's script"),
    ("sh -c -e 'echo {x}'", "{x} is in sh's script"),
    ("sh -o pipefail -c 'echo {x}'", "{x} is in sh's script"),
    ("sh ./{x}.sh", "{x} would choose the program to run"),
    ("awk '{{print \"{x}\"}}' data.txt", "{x} is in awk's script"),
    ("sed -i 's/a/{x}/' data.txt", "{x} is in sed's script"),
    ("node --eval='console.log(\"{x}\")'", "{x} is in node's script"),
    ("ssh -p 2222 deploy@web1 ls {x}", "{x} is in ssh's command"),
    ("watch -n 5 'df {x}'", "{x} is in watch's command"),
    ("su -c 'ls {x}' bob", "{x} is in su's script"),
    # wrappers seen through to the program they start
    ("env -i sh -c 'echo {x}'", "{x} is in sh's script"),
    ("env A=1 ./bin/{x}.sh", "{x} would choose the program to run"),
    ("timeout -s KILL 10 sh -c 'echo {x}'", "{x} is in sh's script"),
    ("sudo -u bob -- sh -c 'echo {x}'", "{x} is in sh's script"),
    ("nice -n 5 busybox sh -c 'echo {x}'", "{x} is in sh's script"),
    ("xargs -I@ sh -c 'echo {x} @'", "{x} is in sh's script"),
    ("find . -name '*.log' -exec sh -c 'gzip {x}' ;", "{x} is in sh's script"),
    ("env -S 'echo {x}'", "{x} is in env's command line"),
])
def test_free_text_where_the_command_holds_code_is_refused(write_jobs, command, expected):
    found = problems(write_jobs, f"[job:a]\ncommand = {command}\nparam.x.type = text\n")
    assert found == [f"FILE:2: [job:a] command: {expected}" + found[0].split(expected, 1)[1]]


def test_values_beside_a_script_or_from_ops_own_lists_are_accepted_there(write_jobs):
    catalog = C.load(write_jobs("""
        [job:a]
        command = sh -c 'echo "$1" {n} {env}' sh {x}
        param.x.type = text
        param.n.type = int
        param.env.type = choice
        param.env.choices = staging, production

        [job:b]
        command = ./{tool}.sh --name {x}
        param.tool.type = choice
        param.tool.choices = build, test
        param.x.type = text
        """))
    assert set(catalog.jobs) == {"a", "b"}


def test_free_text_as_data_of_known_programs_is_accepted(write_jobs):
    """Not everything is code: an option's value, awk's -v, sed's and grep's files, ssh's host."""
    catalog = C.load(write_jobs("""
        [job:a]
        command = awk -v name={x} -F: '{{print name, $1}}' /etc/passwd
        param.x.type = text
        [job:b]
        command = sed -e s/a/b/ -- {x}
        param.x.type = text
        [job:c]
        command = timeout 10 grep -e {x} -- data.txt
        param.x.type = text
        [job:d]
        command = python3 -u tools/report.py --name={x}
        param.x.type = text
        """))
    assert set(catalog.jobs) == {"a", "b", "c", "d"}


def test_after_an_inline_script_a_dashdash_protects_nothing(write_jobs):
    """`sh -c 'sort "$1"' -- {f}`: that `--` is $0, and sort gets the value as its first argument."""
    catalog = C.load(write_jobs("""
        [job:sorted]
        command = sh -c 'sort "$1"' -- {f}
        param.f.type = text
        [job:py]
        command = python3 -c 'import sys; print(sys.argv)' -- {f}
        param.f.type = text
        [job:plain]
        command = sort -- {f}
        param.f.type = text
        """))
    assert [catalog.jobs[j].params[0].leads for j in ("sorted", "py", "plain")] == [True, True, False]


def test_a_choices_command_may_not_run_free_text_as_code_either(write_jobs):
    found = problems(write_jobs, """
        [job:a]
        command = echo {db}
        param.region.type = text
        param.db.type = choice
        param.db.choices_from = sh -c 'list-dbs {region}'
        """)
    assert found == ["FILE:5: [job:a] param.db.choices_from: {region} is in sh's script, which would run a value "
                     "such as $(id) as code: give it as an argument of its own (sh -c '... \"$1\"' _ {region}), or "
                     "make it a choice"]


def test_header_auth_trusting_loopback_without_a_proxy_secret_warns_that_anyone_local_is_anyone(
        write_jobs, tmp_path, monkeypatch):
    monkeypatch.delenv("PUSHBUTTON_PROXY_SECRET", raising=False)
    base = "[pushbutton]\nauth = header\nadmins = alice\ntrusted_proxies = {nets}\n{extra}[job:a]\ncommand = x\n"

    def warnings(nets: str, extra: str = "") -> list[str]:
        catalog = C.load(write_jobs(base.format(nets=nets, extra=extra)))
        return [str(w).split("] ", 1)[1] for w in catalog.warnings]

    for nets in ("127.0.0.1", "::1", "0.0.0.0/0", "10.0.0.0/8, 127.0.0.0/8"):
        assert [w for w in warnings(nets) if "any local user or job could sign in as anyone" in w], nets
    assert warnings("10.0.0.2") == []
    (tmp_path / "proxy-secret").write_text("from-the-file\n")
    catalog = C.load(write_jobs(base.format(nets="127.0.0.1", extra=f"proxy_secret_file = {tmp_path}/proxy-secret\n")))
    assert catalog.warnings == [] and catalog.settings.trusted_proxies.secret == "from-the-file"
    assert "from-the-file" not in repr(catalog.settings)
    inline = warnings("127.0.0.1", "proxy_secret = in-the-ini\n")
    assert len(inline) == 1 and inline[0].startswith("proxy_secret: the proxy secret sits in jobs.ini")
    assert "in-the-ini" not in inline[0]
    monkeypatch.setenv("PUSHBUTTON_PROXY_SECRET", "from-the-env")
    catalog = C.load(write_jobs(base.format(nets="127.0.0.1", extra="")))
    assert catalog.warnings == [] and catalog.settings.trusted_proxies.secret == "from-the-env"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(C.CatalogError, match="is empty"):
        C.load(write_jobs(base.format(nets="127.0.0.1", extra=f"proxy_secret_file = {tmp_path}/empty\n")))
