"""jobs.ini's `[notify:NAME]` sections: where a run's end is sent (Apprise URLs), for which final
states and which jobs. Sending is server/notify.py's.

URLs often hold credentials (an SMTP password, a webhook token), and problems reach the page's
banner and the log: a URL is only ever named by its position and scheme, or by `label`. Apprise
is imported only when a file has `[notify:]` sections (it loads ~200 plugins on first use).
"""

from __future__ import annotations

import logging
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from server.params import split_list

NOTIFY_KEYS = ("urls", "on", "jobs")
STATES = ("succeeded", "failed", "cancelled", "timed_out", "interrupted", "rejected", "expired")
ON = (*STATES, "recovered")  # recovered: succeeded after the job's previous run did not
DEFAULT_ON = frozenset({"failed", "timed_out", "interrupted"})
ORDINAL = {1: "1st", 2: "2nd", 3: "3rd"}
READABLE = ("json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos")  # their host names a server


@dataclass
class Notifier:
    name: str
    urls: list[str] = field(default_factory=list, repr=False)  # may hold secrets: never shown
    labels: list[str] = field(default_factory=list)  # the same URLs as logs may name them (`label`)
    on: frozenset[str] = DEFAULT_ON
    jobs: frozenset[str] | None = None  # None: every job

    def wants(self, job_id: str, state: str, recovered: bool) -> bool:
        if self.jobs is not None and job_id not in self.jobs:
            return False
        return state in self.on or (recovered and "recovered" in self.on)


def split_urls(raw: str) -> list[str]:
    """URLs are separated by whitespace (lines or spaces); a comma belongs to a URL (`to=a@x,b@y`)."""
    return raw.split()


def label(privacy: str) -> str:
    """How logs and the audit name a target: a webhook's or mail server's address from Apprise's
    privacy form (password as ****, and a user without a password, often a token, too), without
    path and query, which Apprise shows as they are (`json://host/hooks/TOKEN`). Any other service
    is only `scheme://****`: its "host" may be the secret itself (an ntfy topic, a bot token)."""
    scheme, _, rest = privacy.partition("://")
    if scheme.lower() not in READABLE:
        return f"{scheme}://****"
    netloc = re.split(r"[/?#]", rest, maxsplit=1)[0]
    user, at, host = netloc.rpartition("@")
    shown = f"{user if ':' in user else '****'}@{host}" if at else host
    return f"{scheme}://{shown}" + ("/..." if len(rest) > len(netloc) + 1 else "")


def instantiate(url: str):
    """(Apprise plugin or None, the warnings Apprise gave, scrubbed of the URL's parts)."""
    import apprise

    with apprise_warnings() as warnings:
        plugin = apprise.Apprise.instantiate(url)
    # Messages quoting the URL ("Could not load ... URL: mailto://u...r@...") half-show its parts: dropped.
    return plugin, [scrub(w, url) for w in warnings if "://" not in w]


@contextmanager
def apprise_warnings():
    """Collect what Apprise logs at WARNING and above on this thread while the block runs. Apprise's
    own records never reach our log: some carry half-masked URLs (`s...w`)."""
    quiet_apprise()
    found: list[str] = []
    me = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == me and record.levelno >= logging.WARNING:
                found.append(record.getMessage())

    handler = Collect()
    logger = logging.getLogger("apprise")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def quiet_apprise() -> None:
    logger = logging.getLogger("apprise")
    logger.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def scrub(text: str, url: str) -> str:
    """`text` with every piece of `url` after its scheme (user, password, host, path, values) of 3
    or more characters replaced by ****: Apprise's messages may quote them."""
    rest = url.split("://", 1)[-1]
    for piece in sorted(set(re.split(r"[/:@?&=#,+]", rest)), key=len, reverse=True):
        if len(piece) >= 3:
            text = text.replace(piece, "****")
    return text


class NotifyChecks:
    """A mixin of the catalog's reader (server/catalog.py): `problem`, `lines`."""

    def notifier(self, name: str, section: str, items) -> Notifier:
        n = Notifier(name)
        for key, raw in items.items():
            if key == "urls":
                n.urls, n.labels = self._notify_urls(section, raw)
            elif key == "on":
                states = set(split_list(raw))
                unknown = sorted(states - set(ON))
                if unknown or not states:
                    self.problem(section, key, f"unknown state {', '.join(unknown) or '(none)'}; expected any of "
                                 f"{', '.join(ON)}")
                n.on = frozenset(states)
            elif key == "jobs":
                n.jobs = frozenset(split_list(raw))
            else:
                self.problem(section, key, "unknown key")
        if not n.urls and (section, "urls") not in self.lines.keys:
            self.problem(section, None, "urls is required: one or more Apprise URLs (docs/notifications.md)")
        return n

    def _notify_urls(self, section: str, raw: str) -> tuple[list[str], list[str]]:
        urls, labels = split_urls(raw), []
        if not urls:
            self.problem(section, "urls", "expected one or more Apprise URLs")
        for number, url in enumerate(urls, 1):
            scheme = url.split("://", 1)[0] if "://" in url else ""
            where = f"the {ORDINAL.get(number, f'{number}th')} URL ({scheme or '?'}://...)"
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
                self.problem(section, "urls", f"{where} is not a URL like mailto://... or json://...")
                continue
            plugin, warnings = instantiate(url)
            if plugin is None:
                known = scheme.lower() in supported_schemes()
                why = "; ".join(dict.fromkeys(warnings)) if known else f"Apprise knows no {scheme}:// service"
                self.problem(section, "urls", f"{where} cannot be used: {why or 'not a valid URL for it'}")
                continue
            labels.append(label(plugin.url(privacy=True)))
        return urls, labels

    def check_notifiers(self, notifiers: dict, jobs: dict) -> None:
        for name, n in notifiers.items():
            for job_id in sorted((n.jobs or set()) - set(jobs)):
                self.problem(f"notify:{name}", "jobs", f"no job {job_id!r}")


def supported_schemes() -> set[str]:
    from apprise.manager_plugins import NotificationManager

    return {s.lower() for s in NotificationManager().schemas()}


def public_url(raw: str) -> str:
    """`[pushbutton] public_url`: the address users reach the page at, the base of links in
    notifications; ends with `/` so that `#/runs/ID` can follow."""
    from urllib.parse import urlsplit

    value = raw.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{value!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        raise ValueError(f"{value!r} is not an address like https://ops.example.com/pushbutton/")
    return value if value.endswith("/") else value + "/"
