"""A job for tests/test_uploads*.py: prints, as one JSON line, its argv, its PB_ environment, and
the SHA-256 and modes of the file its first argument (or $PB_DATA) names."""

import hashlib
import json
import os
import stat
import sys

path = os.environ.get("PB_DATA", "")
seen = {"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items() if k.startswith("PB_")}}
if path:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    seen.update(sha256=digest.hexdigest(), file_mode=stat.S_IMODE(os.stat(path).st_mode),
                dir_mode=stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode))
print(json.dumps(seen))
