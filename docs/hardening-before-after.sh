#!/usr/bin/env bash
# Run the hardening tests against the tree before the hardening work and against this one.
#
#   bash docs/hardening-before-after.sh [NODES_FILE]   # from the repository root, after `make install`
#
# Before: commit 4a078f1 (the parent of the first hardening commit, d51cba0), built into
# /tmp/hw-before-pkg and put first on PYTHONPATH, so the current tests import the old package.
# Two adaptations, both of test scaffolding, never of what a test asserts:
#   - the old tree kept the replay exchange's names in hedgewatch.replay.exchange; its
#     hedgewatch/replay/__init__.py re-exports them;
#   - the hostile-venue tests run from a copy without the bound settings the old tree did not
#     have (request_deadline_s, run_deadline_s, max_body_bytes), i.e. the attack as a user of
#     the old tree would have configured it, and without the `clock` argument its fetch_venue did
#     not take (it read the wall clock).
# Each test runs alone, under `timeout 240` and a 6 GB address-space limit (an endless body would
# otherwise take the machine's memory). Result codes: 0 passed, 1 failed, 4 not runnable
# (an API the test calls did not exist), 124 killed at 240 s (the old code never finished).
# Prints: row, result before, result after, test id.
set -u
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
BEFORE=4a078f1
NODES=${1:-$ROOT/docs/hardening-tests.txt}
WT=/tmp/hw-before
PKG=/tmp/hw-before-pkg
COPY=/tmp/hw-before-tests

if [ ! -d "$PKG/hedgewatch" ]; then
    git worktree add -f "$WT" "$BEFORE" >/dev/null
    (cd "$WT" && "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
        --no-build-isolation --target "$PKG" .)
    cat >>"$PKG/hedgewatch/replay/__init__.py" <<'EOF'

from hedgewatch.replay.exchange import Fault, ReplayExchange, load_candle_files, make_replay  # noqa: F401
try:
    from hedgewatch.replay.exchange import load_funding_files  # noqa: F401
except ImportError:
    pass
EOF
fi
rm -rf "$COPY" && mkdir -p "$COPY" && cp -r "$ROOT/tests/hostile" "$COPY/hostile"
"$PY" - "$COPY/hostile/test_hostile_venue.py" <<'EOF'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = re.sub(r'\s*"(request_deadline_s|run_deadline_s|max_body_bytes)": [0-9_.]+,?', "", text)
text = text.replace(", clock=lambda: NOW)", ")")  # the old fetch_venue read the wall clock
open(path, "w").write(text)
EOF

run() {  # run NODE PYTHONPATH -> result code
    local node=$1 pp=$2
    (
        ulimit -v 6000000
        PYTHONPATH=$pp timeout -k 10 240 "$PY" -m pytest -q -p no:cacheprovider -x \
            -c "$ROOT/pyproject.toml" --rootdir "$ROOT" "$node" >/dev/null 2>&1
    )
    echo $?
}

while read -r row node; do
    [ -z "$row" ] && continue
    case $row in \#*) continue ;; esac
    old_node=$node
    case $node in tests/hostile/*) old_node="$COPY/hostile/${node#tests/hostile/}" ;; esac
    before=$(run "$old_node" "$PKG")
    after=$(run "$node" "")
    printf '%s\t%s\t%s\t%s\n' "$row" "$before" "$after" "$node"
done <"$NODES"
