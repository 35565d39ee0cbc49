"""Issue 11, leftovers (part C). Each check reproduces a finding with files the test makes itself:
random bytes or a bad GGUF magic are named as no known format (with the first bytes), not as a
llama2.c header field out of range; a GGUF string with a NUL inside is named with the NUL's
offset, not printed cut short ("llam" is not supported).
Usage: cli_harden_c.py LOWBIT_BINARY SHARED_DIR"""
import os
import struct
import sys
import tempfile

import lbtest
from lbtest import M, check, lowbit

lbtest.init(timeout=120, report=False)
GGUF = M("stories260K-gguf", "stories260K.gguf")


def fails_with(args, words, absent=()):
    """args exit non-zero and stderr names every string of words and none of absent."""
    r = lowbit(*args)
    err = r.stderr.decode(errors="replace")
    ok = r.returncode not in (0, None) and all(w in err for w in words) and not any(a in err for a in absent)
    check(ok, f"{' '.join(args)}: exit {r.returncode}, stderr {err!r} (wanted {words}, not {list(absent)})")
    return err


def write(d, name, data):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


with tempfile.TemporaryDirectory() as d:
    # finding 6 (format detected first): before, both were "header field dim = ... out of range"
    with open(GGUF, "rb") as f:
        gguf = f.read()
    rnd = write(d, "random.bin", bytes((i * 7919 + 13) % 251 for i in range(4096)))
    bad = write(d, "badmagic.gguf", b"GGUX" + gguf[4:])
    for path in (rnd, bad):
        with open(path, "rb") as f:
            first = " ".join("%02x" % b for b in f.read(8))
        for cmd in (["inspect", path], ["run", "-m", path, "-p", "hi"], ["tokenize", "-m", path, "hi"]):
            fails_with(cmd, [path, "not a GGUF, safetensors, llama2.c or .lbz file", first], ["header field"])
        fails_with(["compress", path, os.path.join(d, "o.lbz")], [path, "not a GGUF or safetensors file", first],
                   ["neither"])
    fails_with(["inspect", write(d, "empty.bin", b"")], ["empty.bin", "not a GGUF", "empty"])
    fails_with(["inspect", M("stories260K-hf", "model.safetensors")], ["safetensors file alone", "folder"])
    # finding 6: tokenizer.ggml.model = "gpt2\0" was reported as "gpt2" is not supported
    for key in ("tokenizer.ggml.model", "general.architecture"):
        b = bytearray(gguf)
        at = b.index(key.encode()) + len(key)
        typ, n = struct.unpack_from("<IQ", b, at)
        check(typ == 8 and n == 5, f"{key} is the 5-byte string llama in {GGUF}")
        b[at + 12 + 4] = 0  # "llam\0": same length, so every later offset stays valid
        p = write(d, "nul.gguf", bytes(b))
        for cmd in (["inspect", p], ["run", "-m", p, "-p", "hi", "-n", "1"]):
            fails_with(cmd, [p, key, "NUL at byte 4", f"file offset {at + 16}"], ["not supported"])
    # a real llama2.c checkpoint is still told apart by its header alone
    r = lowbit("inspect", M("stories260K-llama2c", "stories260K.bin"))
    check(r.returncode == 0 and b"llama2c" in r.stdout, f"llama2.c checkpoint still loads: {r.stderr!r}")

sys.exit(lbtest.finish())
