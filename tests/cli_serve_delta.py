"""lowbit serve --delta under --mem-budget (issue 13): the plan counts each fine-tune's
corrections (F32, every element of every tensor the delta changes: counted here from the two
safetensors files) and the correction buffers, and checks the moment a delta loads (a patched
second load of the base); a budget too small for base + deltas is refused naming the delta; a
budget that admits them holds: the server's peak RSS (VmHWM, read from /proc while it serves the
base and the fine-tune) stays under it.
Usage: cli_serve_delta.py LOWBIT_BINARY SHARED_DIR"""
import json
import os
import re
import shutil
import struct
import sys
import tempfile
import urllib.request

import lbtest
from lbtest import M, check, lowbit

lbtest.init(timeout=120)
LB = lbtest.LOWBIT
MiB = 1 << 20
# ASan's shadow memory and quarantine grow past any plan: RSS is compared with the budget in the
# plain build only (the sanitized run still checks what is admitted and refused)
with open(LB, "rb") as _f:
    SANITIZED = b"__asan_init" in _f.read()


def st_tensors(path):
    """{name: (dtype, shape, raw bytes)} of a safetensors file."""
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b)[0]
    h = json.loads(b[8:8 + n])
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}


def serve(*extra, requests=()):
    """(exit code or None once it listened, stderr up to then, VmHWM KiB after the requests)."""
    p, lines, listening = lbtest.serve_listen("-m", M("stories260K-hf"), "--port", "0", "-np", "2", "-t", "2", *extra)
    port = re.search(r"http://[\d.]+:(\d+)", lines[-1]) if listening else None
    hwm, outs = 0, []
    if port:
        for model in requests:
            body = json.dumps({"model": model, "prompt": "Once upon a time", "max_tokens": 64}).encode()
            req = urllib.request.Request("http://127.0.0.1:%s/v1/completions" % port.group(1), body,
                                         {"Content-Type": "application/json"})
            outs.append(json.loads(urllib.request.urlopen(req, timeout=60).read())["choices"][0]["text"])
        status = open("/proc/%d/status" % p.pid).read()
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
    rc = lbtest.serve_stop(p)
    return (None if port else rc), "".join(lines), hwm, outs


def mib(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


tmp = tempfile.mkdtemp(prefix="cli_serve_delta_")
try:
    T = lambda *p: os.path.join(tmp, *p)
    r = lowbit("delta", "create", M("stories260K-hf"), M("stories260K-ft-dogs"), "-o", T("dogs.delta"), "-q")
    check(r.returncode == 0, "delta create")
    # the corrections, counted independently: 4 bytes for each element of a tensor that changed
    base, ft = st_tensors(M("stories260K-hf", "model.safetensors")), st_tensors(M("stories260K-ft-dogs", "model.safetensors"))
    want = sum(4 * eval("*".join(map(str, shape)) or "1") for k, (_, shape, raw) in base.items() if ft[k][2] != raw)
    check(want > 0, "the fine-tune changes tensors (%d correction bytes)" % want)

    fixed = ("-c", "256", "--kv-type", "f16")
    rc0, err0, _, _ = serve(*fixed, "--mem-budget", "100M")
    rc1, err1, _, _ = serve(*fixed, "--mem-budget", "100M", "--delta", "dogs=" + T("dogs.delta"))
    check(rc0 is None and rc1 is None, "both plans start under 100M: %s %s" % (err0[-300:], err1[-300:]))
    corr = mib(r"corrections ([\d.]+) MiB", err1)
    check(corr is not None and abs(corr * MiB - want) <= 0.006 * MiB, "the plan names the corrections: %s MiB vs %d bytes" % (corr, want))
    t0, t1 = mib(r"= ([\d.]+) MiB <= budget", err0), mib(r"= ([\d.]+) MiB <= budget", err1)
    bufs = mib(r"their buffers ([\d.]+) MiB", err1)
    # the runtime part is each process's own RSS before the load, within a few hundred KiB
    check(t0 and t1 and bufs is not None and abs((t1 - t0) - (corr + bufs)) < 0.5,
          "the plan grows by the corrections and their buffers: %s -> %s MiB (+%s +%s)" % (t0, t1, corr, bufs))
    peak = mib(r"loading the deltas peaks at ([\d.]+) MiB", err1)
    check(peak is not None and peak > t0, "the plan names the load's peak: %s" % err1[-300:])

    # too small for base + delta at a fixed context: refused, naming the delta
    between = "%dK" % int((t0 + corr / 2) * 1024)
    rc, err, _, _ = serve(*fixed, "--mem-budget", between, "--delta", "dogs=" + T("dogs.delta"))
    check(rc == 1 and "--delta fine-tune" in err and "do not fit --mem-budget" in err and "http://" not in err,
          "base fits, base + delta refused: %s" % err.strip()[-400:])
    rc, _, _, _ = serve(*fixed, "--mem-budget", between)
    check(rc is None, "the same budget serves the base alone")
    # room for the plan but not for the moment the delta loads: refused, naming it
    if peak and peak > t1 + 0.3:
        rc, err, _, _ = serve(*fixed, "--mem-budget", "%dK" % int((t1 + peak) / 2 * 1024), "--delta", "dogs=" + T("dogs.delta"))
        check(rc == 1 and "--delta dogs=" in err and "while it loads" in err, "the load's peak over the budget refused: %s" % err.strip()[-400:])
    # a budget that admits base + delta holds while both are served
    budget = peak + 1.0 if peak else 16
    rc, err, hwm, outs = serve(*fixed, "--mem-budget", "%dK" % int(budget * 1024), "--delta", "dogs=" + T("dogs.delta"),
                               requests=("stories260K-hf", "dogs", "dogs"))
    check(rc is None and len(outs) == 3 and outs[0] != outs[1], "base and delta served: %s" % outs)
    check(SANITIZED or 0 < hwm <= budget * 1024, "peak RSS %d KiB under the budget %.0f KiB" % (hwm, budget * 1024))
    # a delta that is not one: refused at planning, naming it
    open(T("bad.delta"), "wb").write(b"not a delta")
    rc, err, _, _ = serve(*fixed, "--mem-budget", "100M", "--delta", "bad=" + T("bad.delta"))
    check(rc == 1 and "--delta bad=" in err, "a bad delta refused by name: %s" % err.strip()[-300:])
finally:
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(lbtest.finish())
