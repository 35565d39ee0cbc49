#!/bin/bash
# lowbit mem: JSON fields against /proc read independently, table sections, usage errors.
# usage: cli_mem.sh LOWBIT_BINARY [SHARED_DIR]
LB="$1"
PY=/usr/bin/python3
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$1"; then ok; else bad "$2"; fi; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# one JSON object; MemTotal exact, MemAvailable close, the stable field names all present
if "$LB" mem --json --count 1 >"$tmp/one.json" 2>"$tmp/err"; then ok; else bad "mem --json --count 1 failed: $(cat "$tmp/err")"; fi
total_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
avail_kb=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
if "$PY" - "$tmp/one.json" "$total_kb" "$avail_kb" <<'PYEOF'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, "expected one line, got %d" % len(lines)
j = json.loads(lines[0])
total, avail = int(sys.argv[2]) * 1024, int(sys.argv[3]) * 1024
for sec, keys in {"system": ["total", "available", "free", "cached", "swap_total", "swap_free"],
                  "cgroup": ["present", "version", "path", "limit", "usage", "peak", "anon", "file", "inactive_file"],
                  "pressure": ["present", "some", "full"],
                  "process": ["rss", "anon", "file", "peak_rss", "vm_size"]}.items():
    for k in keys:
        assert k in j[sec], "missing %s.%s" % (sec, k)
assert j["system"]["total"] == total, "total %d vs MemTotal %d" % (j["system"]["total"], total)
assert abs(j["system"]["available"] - avail) < 256 << 20, "available %d vs %d" % (j["system"]["available"], avail)
p = j["process"]
assert p["rss"] == p["anon"] + p["file"] and 0 < p["rss"] <= p["vm_size"] and p["peak_rss"] >= p["rss"]
assert j["level"] in ("none", "low", "medium", "high", "critical")
if j["cgroup"]["present"]:
    assert j["cgroup"]["version"] in (1, 2) and j["cgroup"]["usage"] > 0
    assert j["cgroup"]["limit"] is None or j["cgroup"]["limit"] > 0
else:
    assert j["cgroup"]["usage"] is None
try:
    psi = open("/proc/pressure/memory").read().split()
    assert j["pressure"]["present"] is True
    assert abs(j["pressure"]["some"]["avg300"] - float(psi[3].split("=")[1])) < 1.0
except FileNotFoundError:
    assert j["pressure"]["present"] is False
PYEOF
then ok; else bad "JSON check"; fi

# --detailed adds the smaps_rollup fields; --watch + --count gives one object per line
"$LB" mem --json --detailed --count 1 >"$tmp/det.json" 2>/dev/null
check "$PY -c 'import json,sys; j=json.load(open(sys.argv[1])); p=j[\"process\"]; assert p[\"pss\"] > 0 and \"hwm\" in p and \"locked\" in p' $tmp/det.json" "detailed JSON"
"$LB" mem --json --watch 0.05 --count 3 >"$tmp/watch.json" 2>/dev/null
check "$PY -c 'import json,sys; l=open(sys.argv[1]).read().splitlines(); assert len(l) == 3; t=[json.loads(x)[\"time_ns\"] for x in l]; assert t[0] < t[1] < t[2]' $tmp/watch.json" "watch --count 3"

# the table has its four sections and human units
"$LB" mem >"$tmp/table.txt" 2>&1
check "[ \$? -eq 0 ]" "table exit status"
for s in '^system' '^cgroup' '^pressure' '^process' 'GiB' 'level'; do
    check "grep -q '$s' $tmp/table.txt" "table lacks $s"
done

# an interrupted watch stops cleanly
"$LB" mem --watch 0.1 >/dev/null 2>&1 &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid
check "[ \$? -eq 0 ]" "SIGINT during --watch exits 0"

# usage errors: exit 2 with a message naming the problem
usage_err() { # expected-text args...
    local want="$1"; shift
    "$LB" mem "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 2 ] && grep -q -- "$want" "$tmp/err"; then ok; else bad "mem $* -> rc $rc, stderr: $(cat "$tmp/err")"; fi
}
usage_err "not a number" --watch x
usage_err "needs a value" --watch
usage_err "more than 0" --watch 0
usage_err "more than 0" --watch -1
usage_err "not an integer" --count 0
usage_err "not an integer" --count abc
usage_err "unknown option" --bogus
"$LB" mem --help >"$tmp/help" 2>&1
check "[ \$? -eq 0 ] && grep -q -- '--watch' $tmp/help" "--help"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
