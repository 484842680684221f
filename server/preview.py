"""What a run executes, built in one place: the executors run it, the preview shows it.

`command_of` is the only code that turns a job and its values into argv, environment and working
folder; `Runs._execute` hands its result to the local process or to the SSH fan-out, whose remote
command line comes from `ssh.remote_command`. `preview` is the same two functions plus masking, so
what a user (or an approver) is shown cannot differ from what runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from server import params as P
from server.catalog import Job
from server.executors.ssh import remote_command
from server.files.artifacts import ENV as ARTIFACTS_ENV

# Stands in the preview's remote command line for the wrapper's per-host random token, which is
# made only when the host is contacted (so that no value can know it: server/executors/ssh.py).
NONCE = "NONCE"


@dataclass(frozen=True)
class Command:
    argv: list[str]
    env: dict[str, str]  # set over the server's environment (locally) or exported by the wrapper (remotely)
    shell: bool
    workdir: str | None  # local runs only: a remote command starts in the login directory
    targets: list[str]  # host names; empty for this machine
    grace: float

    def remote(self, nonce: str) -> str:
        """The command line the remote login shell runs, for each target."""
        return remote_command(self.argv, nonce, self.grace)


def command_of(job: Job, values: dict[str, P.Value], run_id: int | None = None,
               artifacts: str | None = None) -> Command:
    """argv, environment and working folder of a run of `job` with these (validated) values.
    A shell job's command stays as written: its values reach it as $PB_NAME only. A local job
    gets PB_ARTIFACTS, its run's artifacts folder (the preview, before any run, names it only)."""
    argv = list(job.argv) if job.shell else P.build_argv(job.argv, values)
    env = {**job.env, **P.build_env(values), "PYTHONUNBUFFERED": "1",
           "PUSHBUTTON_RUN_ID": "" if run_id is None else str(run_id)}
    targets = [target.host.name for target in job.targets]
    if not targets:
        env[ARTIFACTS_ENV] = artifacts or ""
    return Command(argv, env, job.shell, None if targets else str(job.workdir), targets, job.grace)


def preview(job: Job, values: dict[str, P.Value]) -> dict:
    """What would run, as the API shows it: env as names only, and any secret value that could
    appear in argv or the remote line (none can: secrets travel in the environment) masked.
    `masked` names the parameters whose values `params` shows masked (as `P.masked` does), so that
    Run again drops those and keeps a text value that merely reads like the mask."""
    command = command_of(job, values)
    masked = [p.name for p in job.params if p.secret and values.get(p.name)]
    secrets = [P.as_text(values[name]) for name in masked]

    def mask(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, P.MASK)
        return text

    remote = {host: mask(command.remote(NONCE)) for host in command.targets} if command.targets else None
    return {"argv": [mask(arg) for arg in command.argv], "shell": command.shell, "targets": command.targets,
            "env": sorted(command.env), "workdir": command.workdir, "remote": remote, "masked": masked}
