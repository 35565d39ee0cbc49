"""Shared helpers of the Python CLI test drivers (tests/cli_*.py, tests/e2e_engine.py): pass/fail
counting, the lowbit subprocess runner, shared-folder paths, float files, relative error, an
independent GGUF reader. A driver calls init() first and ends with sys.exit(finish())."""
import json
import os
import struct
import subprocess
import sys

LOWBIT = SHARED = None
_TIMEOUT = 600
_REPORT = True
passed = failed = 0


def init(timeout=600, report=True):
    """Reads LOWBIT_BINARY [SHARED_DIR] from argv. timeout: seconds per lowbit call; report:
    whether lowbit(ok=True) prints a failing command and its stderr."""
    global LOWBIT, SHARED, _TIMEOUT, _REPORT
    LOWBIT = sys.argv[1]
    SHARED = sys.argv[2] if len(sys.argv) > 2 else None
    _TIMEOUT, _REPORT = timeout, report
    return LOWBIT, SHARED


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def finish():
    """Prints "N passed, N failed"; returns the exit code."""
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def lowbit(*args, ok=True):
    r = subprocess.run([LOWBIT, *args], capture_output=True, timeout=_TIMEOUT)
    if _REPORT and ok and r.returncode != 0:
        print("lowbit", *args, "->", r.returncode, r.stderr.decode(errors="replace"), file=sys.stderr)
    return r


def S(*p):
    return os.path.join(SHARED, *p)


def M(*p):
    return os.path.join(SHARED, "models", *p)


def read_f32(path):
    with open(path, "rb") as f:
        b = f.read()
    return struct.unpack("<%df" % (len(b) // 4), b)


def rel_err(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5
    den = sum(y * y for y in b) ** 0.5
    return num / den if den else num


def calib_split(d):
    """The shared corpus cut in two at a line boundary into d: (calibration half, held-out half)."""
    with open(S("corpus", "tinystories-sampled.txt")) as f:
        text = f.read()
    cut = text.find("\n", len(text) // 2) + 1
    calib, held = os.path.join(d, "calib.txt"), os.path.join(d, "held.txt")
    with open(calib, "w") as f:
        f.write(text[:cut])
    with open(held, "w") as f:
        f.write(text[cut:])
    return calib, held


def kl(model, base, text):
    """Mean KL(base || model) over text by lowbit perplexity --kl-base (None when it fails)."""
    r = lowbit("perplexity", "-m", model, "-f", text, "-c", "128", "--kl-base", base, "--json")
    return json.loads(r.stdout)["kl"] if r.returncode == 0 else None


def serve_listen(*args):
    """`lowbit serve ARGS` with stderr piped: (process, its stderr lines up to the line naming its
    http:// address or its exit, whether it listens)."""
    p = subprocess.Popen([LOWBIT, "serve", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         errors="replace")
    lines = []
    for line in p.stderr:
        lines.append(line)
        if "http://" in line:
            break
    return p, lines, bool(lines) and "http://" in lines[-1]


def serve_stop(p):
    """SIGTERM, then SIGKILL after 60 s: the exit code."""
    p.terminate()
    try:
        return p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def run_json(model, prompt, n, *extra):
    """`lowbit run --json` with one thread: greedy generation."""
    return lowbit("run", "-m", model, "-p", prompt, "-n", str(n), "--json", "-t", "1", *extra)


def run_logits(model, ids, out, *extra):
    """`lowbit logits` for the ids into the file out."""
    return lowbit("logits", "-m", model, "--ids", ",".join(map(str, ids)), "-o", out, *extra)


def logits(model, ids, out):
    """The logits of the ids (read back from out), or None when lowbit fails."""
    r = run_logits(model, ids, out)
    return read_f32(out) if r.returncode == 0 else None


# ---- a small GGUF reader (independent of the C one) --------------------------------------
class Gguf:
    SIZES = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    TYPE_BYTES = {0: 4, 1: 2, 30: 2}
    BLOCKS = {35: (256, 66)}  # TQ2_0: elements per block, bytes per block

    def __init__(self, path, limit=-1):
        """limit: read at most this many bytes (enough for the header), -1 for the whole file."""
        with open(path, "rb") as f:
            self.b = f.read(limit)
        self.o = 0
        assert self.b[:4] == b"GGUF", path
        self.o = 4
        _, n_t, n_kv = self.u("<IQQ")
        self.kv = {}
        for _ in range(n_kv):
            k = self.s()
            self.kv[k] = self.val(self.u("<I")[0])
        self.tensors = {}
        for _ in range(n_t):
            name = self.s()
            nd = self.u("<I")[0]
            ne = self.u("<%dQ" % nd)
            ty, off = self.u("<IQ")
            self.tensors[name] = (ty, ne, off)
        align = self.kv.get("general.alignment", 32)
        self.data = (self.o + align - 1) // align * align

    def u(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.o)
        self.o += struct.calcsize(fmt)
        return v

    def s(self):
        n = self.u("<Q")[0]
        v = self.b[self.o:self.o + n].decode("utf-8", "replace")
        self.o += n
        return v

    def val(self, t):
        if t == 8:
            return self.s()
        if t == 9:
            et, n = self.u("<IQ")
            return [self.val(et) for _ in range(n)]
        return self.u("<" + self.SIZES[t])[0]

    def raw(self, name):
        ty, ne, off = self.tensors[name]
        n = 1
        for x in ne:
            n *= x
        start = self.data + off
        nbytes = n // self.BLOCKS[ty][0] * self.BLOCKS[ty][1] if ty in self.BLOCKS else n * self.TYPE_BYTES[ty]
        return ty, ne, self.b[start:start + nbytes]

    def f32(self, name):
        ty, ne, raw = self.raw(name)
        assert ty == 0
        return struct.unpack("<%df" % (len(raw) // 4), raw)


def gguf_header(path):
    """Metadata (arrays as their lengths) and {tensor name: (type id, shape)} of a GGUF file,
    from its first MiB."""
    g = Gguf(path, 1 << 20)
    kv = {k: len(v) if isinstance(v, list) else v for k, v in g.kv.items()}
    return kv, {name: (ty, ne) for name, (ty, ne, _off) in g.tensors.items()}
