#!/usr/bin/env bash
# lowbit run -f and run --parallel N: each prompt of a file generated through the batched engine
# gives the same greedy text as running it alone (the independent truth: the single-sequence
# path), in prompt order; -f - reads stdin; bad use gets a clear error.
L=$1; S=$2
M=$S/models/stories260K-gguf/stories260K.gguf
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { if [ "$1" = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $2"; fi; }
printf 'Once upon a time\nThe cat sat\n\nLily went to the park\nOnce upon a time there was\nA dog\n' > "$T/p.txt"
mapfile -t prompts < <(grep -v '^$' "$T/p.txt")
# every prompt's line of a --parallel run equals running that prompt alone with the same options
same_as_alone() { # label, options...
  local label=$1; shift
  "$L" run -m "$M" -f "$T/p.txt" --json "$@" > "$T/par.jsonl" 2>"$T/err" || { ok 0 "$label exit: $(cat "$T/err")"; return; }
  local i=0 p alone got same
  for p in "${prompts[@]}"; do
    i=$((i + 1))
    alone=$("$L" run -m "$M" -p "$p" --json "${@:3}" 2>/dev/null)
    got=$(sed -n "${i}p" "$T/par.jsonl")
    same=$(/usr/bin/python3 -c 'import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(int(a["ids"]==b["ids"] and a["text"]==b["text"] and a["prompt_ids"]==b["prompt_ids"] and b["index"]==int(sys.argv[3]) and len(a["ids"])>0))' "$alone" "$got" $i)
    ok "$same" "$label prompt $i ($p) differs from running it alone"
  done
}
for n in 1 2 5; do same_as_alone "--parallel $n" --parallel $n -n 24; done
# continuous batching: a context of 20 ends each prompt at its own step (20 - its length + 1
# tokens; the last one is not fed back), so with 2 slots over 5 prompts a freed slot takes the
# next prompt while the other still runs. The decode steps then equal the makespan of assigning
# the prompts, in order, to whichever slot frees first (waves of 2 would take longer).
same_as_alone "--parallel 2 --ctx 20" --parallel 2 --ctx 20 -n 64
steps=$(sed -n 's/.* in \([0-9]*\) decode steps.*/\1/p' "$T/err")
sched=$(/usr/bin/python3 -c '
import json, sys
d = []
for l in open(sys.argv[1]):
    r = json.loads(l); g, p = len(r["ids"]), len(r["prompt_ids"])
    d.append(g - 1 if g == 20 - p + 1 else g)  # an end-of-text id ends it after g fed ids
free = [0, 0]
for x in d:
    k = free.index(min(free)); free[k] += x
waves = sum(max(d[i:i + 2]) for i in range(0, len(d), 2))
print(max(free), waves, len(set(d)))' "$T/par.jsonl")
read -r want waves distinct <<< "$sched"
ok $([ -n "$steps" ] && [ "$steps" = "$want" ] && [ "$want" -lt "$waves" ] && [ "$distinct" -ge 3 ] && grep -q 'at most 2 at a time' "$T/err" && echo 1) \
  "refill: $steps decode steps, scheduled $want, waves $waves, distinct lengths $distinct: $(cat "$T/err")"
# text output: labelled, in prompt order
"$L" run -m "$M" --parallel 3 -f "$T/p.txt" -n 8 > "$T/text" 2>/dev/null
labels=$(grep -c '^--- [0-9]*: ' "$T/text"); first=$(grep -m1 '^--- ' "$T/text"); last=$(grep '^--- ' "$T/text" | tail -1)
ok $([ "$labels" = 5 ] && [ "$first" = "--- 1: Once upon a time" ] && [ "$last" = "--- 5: A dog" ] && echo 1) "labels: $labels '$first' '$last'"
# -f FILE and -f - equal -p (one trailing newline dropped)
a=$("$L" run -m "$M" -p "The cat sat" -n 16 --json 2>/dev/null)
printf 'The cat sat\n' > "$T/one.txt"
b=$("$L" run -m "$M" -f "$T/one.txt" -n 16 --json 2>/dev/null)
c=$(printf 'The cat sat\n' | "$L" run -m "$M" -f - -n 16 --json 2>/dev/null)
ok $([ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && echo 1) "-f / -f - differ from -p"
# bad use
"$L" run -m "$M" --parallel 2 -p hi >/dev/null 2>"$T/e1"; r1=$?
ok $([ $r1 = 2 ] && grep -q -- '--parallel needs -f' "$T/e1" && echo 1) "--parallel without -f: rc $r1 $(cat "$T/e1")"
"$L" run -m "$M" -f "$T/missing.txt" >/dev/null 2>"$T/e2"; r2=$?
ok $([ $r2 = 1 ] && grep -q 'missing.txt' "$T/e2" && echo 1) "missing file: rc $r2 $(cat "$T/e2")"
printf '\n\n' > "$T/empty.txt"
"$L" run -m "$M" --parallel 2 -f "$T/empty.txt" >/dev/null 2>"$T/e3"; r3=$?
ok $([ $r3 = 1 ] && grep -q 'no prompts' "$T/e3" && echo 1) "empty prompt file: rc $r3 $(cat "$T/e3")"
printf 'a\0b\n' > "$T/nul.txt"
"$L" run -m "$M" -f "$T/nul.txt" >/dev/null 2>"$T/e4"; r4=$?
ok $([ $r4 = 1 ] && grep -q 'offset 1' "$T/e4" && echo 1) "NUL byte: rc $r4 $(cat "$T/e4")"
# bench --parallel: one entry per listed count, in order, with positive speeds (not judged)
j=$("$L" bench -m "$M" --parallel 1,3 -p 8 -n 4 -r 1 --json 2>/dev/null)
ok $(/usr/bin/python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(int([x["parallel"] for x in d]==[1,3] and all(x["tg_tok_s"]>0 and x["pp_tok_s"]>0 and abs(x["tg_tok_s_per_seq"]*x["parallel"]-x["tg_tok_s"])<0.1 for x in d)))' "$j" 2>/dev/null) "bench --parallel json: $j"
"$L" bench -m "$M" --parallel 1,x >/dev/null 2>"$T/e5"; r5=$?
ok $([ $r5 = 2 ] && grep -q "1,x" "$T/e5" && echo 1) "bad --parallel list: rc $r5 $(cat "$T/e5")"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
