"""A request's header fields, read without the email package.

gevent's pywsgi reads them with `http.client.parse_headers`, which hands them to `email.parser`:
~35 us of every request, the largest single cost of a small one. This reads them within the same
limits (a line of at most MAX_LINE bytes, at most MAX_FIELDS fields) into the same message class
(gevent's `OldMessage`, whose lookups pywsgi and the WSGI environ use), and is stricter where the
email parser guessed: a line that is not `name: value` (a folded continuation line, a name with
a space or other non-token character, no colon, a control character in the value) makes the
request a 400, where the email parser ended the headers there without a word and read the rest
as a body. RFC 9112 lets a server refuse both; a proxy and this server reading different header
fields from one request is how requests are smuggled past the proxy.
"""

from __future__ import annotations

import re

from gevent.pywsgi import OldMessage

MAX_LINE = 65536  # as http.client
MAX_FIELDS = 100
FIELD = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+):([^\x00-\x08\x0a-\x1f\x7f]*)\r?\n")


def parse(fp) -> OldMessage:
    """Header lines from `fp` up to the empty line. A message whose `status` is set is refused
    (pywsgi answers 400 and closes); its fields are then not to be read."""
    message = OldMessage()
    fields = message._headers  # email.message.Message's own list of (name, value)
    while True:
        line = fp.readline(MAX_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            return message
        if len(line) > MAX_LINE:
            message.status = "Line too long"
            return message
        if len(fields) >= MAX_FIELDS:
            message.status = f"More than {MAX_FIELDS} header fields"
            return message
        field = FIELD.fullmatch(line.decode("latin-1"))
        if field is None:
            message.status = "Malformed header field"
            return message
        name, value = field.groups()
        fields.append((name, value.strip(" \t")))


def cookie(environ: dict, name: str) -> str | None:
    """One cookie's value from the request, or None. Not `http.cookies`: its parser is quadratic
    on some headers in the Pythons this runs on (CVE-2024-7592: a 60 KB Cookie header held the
    hub ~11 s). Ours are plain tokens: `name=value` pairs split on `;`, a quoted value unquoted;
    of two with one name, the first (the browser sends the most specific path first)."""
    for pair in environ.get("HTTP_COOKIE", "").split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            return value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
    return None
