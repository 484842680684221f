#!/bin/sh
# Always fails, to show what a failed run looks like.
echo "Checking /var/data..."
echo "error: /var/data is 97% full (limit 90%)" >&2
exit 3
