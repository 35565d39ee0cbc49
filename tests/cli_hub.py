"""lowbit pull and -m hf:// against a fake Hub on loopback (tests/hub_fake.py): fresh download,
huggingface_hub's cache layout, an interrupted download resumed by a Range request, a corrupted
download refused with nothing left under the final name, the token sent to the Hub but never to
the blob host, gated / missing repositories and files with clear errors, offline use from the
cache, and generation from an hf:// model equal to generation from the local file.
Usage: cli_hub.py LOWBIT_BINARY SHARED_DIR"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import lbtest
from lbtest import M, check

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hub_fake import TOKEN, FakeHub, git_blob_sha1  # noqa: E402

LOWBIT, SHARED = lbtest.init(timeout=300, report=False)
tmp = tempfile.mkdtemp(prefix="cli_hub_")
T = lambda *p: os.path.join(tmp, *p)  # noqa: E731


def read(p):
    with open(p, "rb") as f:
        return f.read()


def sh(*args):
    return subprocess.run(list(args), capture_output=True, timeout=300)


gguf = read(M("stories260K-gguf", "stories260K.gguf"))
r = sh(LOWBIT, "quantize", M("stories260K-gguf", "stories260K.gguf"), T("q8.gguf"), "--type", "q8_0")
check(r.returncode == 0, "quantize a second GGUF for the repository: %s" % r.stderr.decode(errors="replace"))
q8 = read(T("q8.gguf"))
readme = b"# stories260K\nA tiny Llama for tests.\n"
DEEP = "/".join(["d"] * 500) + ".txt"  # 499 folders: its link target is 1.5 KB of "../"
hf_dir = M("stories260K-hf")
hf_files = {n: read(os.path.join(hf_dir, n)) for n in os.listdir(hf_dir)}
hf_files["README.md"] = readme
repos = {
    "lowbit-test/stories260K": {"files": {"stories260K-F32.gguf": gguf, "stories260K-Q8_0.gguf": q8, "README.md": readme,
                                          "docs/notes.txt": b"notes\n", DEEP: b"deep\n"}},
    "lowbit-test/stories-hf": {"files": hf_files},
    "lowbit-test/gated": {"files": {"m-Q8_0.gguf": q8}, "gated": True},
}
hub = FakeHub(repos, renamed={"old-owner/stories260K": "lowbit-test/stories260K"}).start()
home = T("hf")
env0 = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
ENV = dict(env0, HF_ENDPOINT=hub.url, HF_HOME=home)


def pull(ref, env=None, *extra):
    r = subprocess.run([LOWBIT, "pull", ref, *extra], capture_output=True, timeout=300, env=env or ENV)
    return r.returncode, r.stdout.decode().strip(), r.stderr.decode(errors="replace")


def lowbit_env(env, *args):
    return subprocess.run([LOWBIT, *args], capture_output=True, timeout=300, env=env)


def fault(**kw):
    import urllib.request
    q = "&".join("%s=%d" % kv for kv in kw.items())
    urllib.request.urlopen(urllib.request.Request(hub.url + "/_fault?" + q, method="POST")).read()


def log_since(n):
    with hub.lock:
        return hub.log[n:]


repo_dir = os.path.join(home, "hub", "models--lowbit-test--stories260K")
commit = hub.commit("lowbit-test/stories260K")
sha_q8 = hashlib.sha256(q8).hexdigest()
try:
    # ---- fresh download by quantization tag; the cache as huggingface_hub lays it out ----
    n0 = len(hub.log)
    rc, path, err = pull("lowbit-test/stories260K:q8_0", dict(ENV, HF_TOKEN=TOKEN))
    check(rc == 0, "pull :q8_0 -> %d %s" % (rc, err))
    want = os.path.join(repo_dir, "snapshots", commit, "stories260K-Q8_0.gguf")
    check(path == want, "printed path %r, want %r" % (path, want))
    check(os.path.islink(want) and os.readlink(want) == "../../blobs/" + sha_q8, "snapshot link -> ../../blobs/<sha256>")
    check(read(want) == q8, "downloaded bytes equal the repository's")
    check(read(os.path.join(repo_dir, "refs", "main")) == commit.encode(), "refs/main holds the commit, no newline")
    check(sorted(os.listdir(os.path.join(repo_dir, "blobs"))) == [sha_q8], "blobs/ holds one blob named by its sha256")
    check(os.path.exists(os.path.join(home, "hub", ".locks", "models--lowbit-test--stories260K", sha_q8 + ".lock")),
          "the download took .locks/models--OWNER--NAME/<etag>.lock")
    lg = log_since(n0)
    check(any(e["host"] == "main" and e["auth"] == "Bearer " + TOKEN for e in lg), "HF_TOKEN sent to the Hub")
    check(all(e["auth"] is None for e in lg if e["host"] == "blob"), "HF_TOKEN never sent to the blob host")
    check(any(e["host"] == "main" and "/api/models/lowbit-test/stories260K/revision/main" in e["path"] for e in lg),
          "the tag was matched over the API's file list")

    # ---- a second pull is a cache hit: no blob transfer ----
    n0 = len(hub.log)
    rc, path2, err = pull("hf://lowbit-test/stories260K:stories260K-Q8_0.gguf")
    check(rc == 0 and path2 == want, "pull by FILE after the tag gives the same path (%s)" % err)
    check(not any(e["host"] == "blob" for e in log_since(n0)), "cached blob not downloaded again")

    # ---- small (non-LFS) file in a subfolder: git blob hash, deeper relative link ----
    rc, p, err = pull("lowbit-test/stories260K:docs/notes.txt")
    check(rc == 0 and read(p) == b"notes\n", "subfolder file pulled (%s)" % err)
    check(rc == 0 and os.readlink(p) == "../../../blobs/" + git_blob_sha1(b"notes\n"), "subfolder link has one more ../")

    rc, p, err = pull("lowbit-test/stories260K:" + DEEP)
    check(rc == 0 and read(p) == b"deep\n" and os.readlink(p).count("../") == 501, "a 499-folder path links back (%s)" % err[-200:])

    # ---- interrupted download, resumed with a Range request ----
    fault(drop=100000)
    rc, _, err = pull("lowbit-test/stories260K:stories260K-F32.gguf")
    sha_f32 = hashlib.sha256(gguf).hexdigest()
    inc = os.path.join(repo_dir, "blobs", sha_f32 + ".incomplete")
    check(rc != 0 and "interrupted" in err and "resume" in err, "interrupted download fails, says resume: %s" % err)
    check(os.path.exists(inc) and os.path.getsize(inc) == 100000, "the partial bytes stay in <etag>.incomplete")
    check(not os.path.exists(os.path.join(repo_dir, "blobs", sha_f32)), "nothing under the final blob name")
    check(not os.path.exists(os.path.join(repo_dir, "snapshots", commit, "stories260K-F32.gguf")), "no snapshot link yet")
    n0 = len(hub.log)
    rc, p, err = pull("lowbit-test/stories260K:stories260K-F32.gguf")
    check(rc == 0 and read(p) == gguf, "resumed download completes with the right bytes (%s)" % err)
    check(any(e["host"] == "blob" and e["range"] == "bytes=100000-" for e in log_since(n0)), "resumed with Range: bytes=100000-")
    check(not os.path.exists(inc), "no .incomplete left after the resume")

    # ---- corrupted download refused ----
    shutil.rmtree(home)
    fault(corrupt=1)
    rc, _, err = pull("lowbit-test/stories260K:stories260K-Q8_0.gguf")
    check(rc != 0 and "does not match" in err and "sha256" in err, "corrupt download refused: %s" % err)
    blobs = os.path.join(repo_dir, "blobs")
    check(not os.path.isdir(blobs) or os.listdir(blobs) == [], "no blob and no .incomplete left after corruption")
    check(not os.path.exists(os.path.join(repo_dir, "snapshots", commit, "stories260K-Q8_0.gguf")), "no link to a corrupt blob")

    # ---- generation from hf:// equals the local file ----
    rc, _, err = pull("lowbit-test/stories260K:Q8_0")
    check(rc == 0, "pull again after corruption (%s)" % err)
    args = ["-p", "Once upon a time", "-n", "12", "--json", "-t", "1"]
    a = lowbit_env(ENV, "run", "-m", "hf://lowbit-test/stories260K:Q8_0", *args)
    b = lowbit_env(ENV, "run", "-m", T("q8.gguf"), *args)
    check(a.returncode == 0 and b.returncode == 0 and json.loads(a.stdout)["ids"] == json.loads(b.stdout)["ids"],
          "run -m hf://...:Q8_0 generates the local file's ids (%s)" % a.stderr.decode(errors="replace")[-300:])

    # ---- offline: from the cache without a server; not cached: names the path ----
    dead = dict(ENV, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1")
    rc, p, err = pull("lowbit-test/stories260K:Q8_0", dead)
    check(rc == 0 and p == want, "offline hit from the cache (%s)" % err)
    rc, _, err = pull("lowbit-test/other:Q8_0", dead)
    check(rc != 0 and "not in the cache" in err and "models--lowbit-test--other" in err, "offline miss names the cache: %s" % err)
    rc, p, err = pull("lowbit-test/stories260K:Q8_0", dict(ENV, HF_ENDPOINT="http://127.0.0.1:9"))
    check(rc == 0 and p == want and "cached copy" in err, "no network: the cached copy serves, with a warning (%s)" % err)
    a = lowbit_env(dead, "inspect", "hf://lowbit-test/stories260K:Q8_0")
    check(a.returncode == 0 and b"q8_0" in a.stdout.lower(), "inspect hf:// offline (positional argument)")

    # ---- safetensors model folder ----
    rc, p, err = pull("lowbit-test/stories-hf")
    hc = hub.commit("lowbit-test/stories-hf")
    check(rc == 0 and p.endswith("snapshots/" + hc), "folder repository resolves to its snapshot folder (%s)" % err)
    check(rc == 0 and sorted(os.listdir(p)) == sorted(n for n in hf_files if n != "README.md"),
          "folder pull takes config, tokenizer and weights, not the README")
    a = lowbit_env(ENV, "run", "-m", "hf://lowbit-test/stories-hf", *args)
    b = lowbit_env(ENV, "run", "-m", hf_dir, *args)
    check(a.returncode == 0 and b.returncode == 0 and json.loads(a.stdout)["ids"] == json.loads(b.stdout)["ids"],
          "run on the pulled folder equals the shared folder")

    # ---- errors ----
    rc, _, err = pull("lowbit-test/stories260K")
    check(rc != 0 and "stories260K-F32.gguf" in err and "stories260K-Q8_0.gguf" in err, "ambiguous GGUF lists them: %s" % err)
    rc, _, err = pull("lowbit-test/stories260K:Q2_K")
    check(rc != 0 and "no GGUF file matches" in err, "no match for a tag: %s" % err)
    rc, _, err = pull("lowbit-test/stories260K:missing.gguf")
    check(rc != 0 and "404" in err and "missing.gguf" in err, "missing file: 404 named: %s" % err)
    rc, _, err = pull("lowbit-test/nothere:x.gguf")
    check(rc != 0 and "404" in err, "missing repository: %s" % err)
    rc, _, err = pull("lowbit-test/gated:m-Q8_0.gguf")
    check(rc != 0 and "401" in err and "HF_TOKEN" in err, "gated without token says so: %s" % err)
    rc, p, err = pull("lowbit-test/gated:m-Q8_0.gguf", dict(ENV, HF_TOKEN=TOKEN))
    check(rc == 0 and read(p) == q8, "gated with token (%s)" % err)
    rc, p, err = pull("old-owner/stories260K:README.md")
    check(rc == 0 and read(p) == readme, "a relative redirect (renamed repository) is followed (%s)" % err)
    for bad in ("../x", "a/..", "a/b:../../etc/passwd", "a/b:/abs.gguf", "a/b@..:x.gguf", "nobody", "a/b:"):
        rc, _, err = pull(bad)
        check(rc == 1 and "lowbit:" in err, "bad reference %r refused: %s" % (bad, err))
    rc, _, err = pull("lowbit-test/stories260K:x.gguf", dict(ENV, HF_ENDPOINT="http://127.0.0.1:9"))
    check(rc != 0 and "127.0.0.1:9" in err, "network failure names the URL: %s" % err)
    r = lowbit_env(ENV, "pull", "--help")
    check(r.returncode == 0 and b"usage: lowbit pull" in r.stdout, "pull --help")
finally:
    hub.stop()
    shutil.rmtree(tmp, ignore_errors=True)
sys.exit(lbtest.finish())
