"""A fake Hugging Face Hub on loopback for the pull tests (tests/cli_hub.py): the Hub's URL and
header layout (resolve/REV/FILE with X-Repo-Commit and ETag; LFS files answered by a 302 to a
second port, the blob host, with X-Linked-Etag = sha256 and X-Linked-Size; the model info API;
Range requests; a relative 307 for a renamed repository; 401 for a gated repository without the
token). Faults for the next blob transfer are set through POST /_fault?drop=N|corrupt=1; every
request is logged (method, path, Authorization, Range) for GET /_log.

Usage as a module: hub = FakeHub(repos); hub.start(); ... hub.stop().
repos: {"owner/name": {"files": {"path": bytes}, "gated": bool}}; commits are derived from the
contents (40 hex digits), as a git commit would change with them."""
import hashlib
import http.server
import json
import threading
import urllib.parse

LFS_MIN = 1024  # files at least this large are LFS files (served by the blob host)
TOKEN = "hf_fake_token"


def git_blob_sha1(b):
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


class FakeHub:
    def __init__(self, repos, renamed=None):
        self.repos = {}
        for name, r in repos.items():
            h = hashlib.sha1(name.encode())
            for p in sorted(r["files"]):
                h.update(p.encode() + hashlib.sha256(r["files"][p]).digest())
            self.repos[name] = {"files": r["files"], "gated": r.get("gated", False), "commit": h.hexdigest()}
        self.renamed = renamed or {}  # old name -> new name
        self.blobs = {hashlib.sha256(b).hexdigest(): b for r in self.repos.values() for b in r["files"].values()}
        self.log, self.fault, self.lock = [], {}, threading.Lock()

    # ---- servers ----
    def start(self):
        hub = self

        class Main(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hub.main(self, head=True)

            def do_GET(self):
                hub.main(self, head=False)

            def do_POST(self):
                hub.control(self)

        class Blob(Main):
            def do_HEAD(self):
                hub.blob(self, head=True)

            def do_GET(self):
                hub.blob(self, head=False)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Main)
        self.bsrv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blob)
        for s in (self.srv, self.bsrv):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.blob_url = "http://127.0.0.1:%d" % self.bsrv.server_address[1]
        return self

    def stop(self):
        for s in (self.srv, self.bsrv):
            s.shutdown()
            s.server_close()

    def commit(self, repo):
        return self.repos[repo]["commit"]

    # ---- handlers ----
    def note(self, h, host):
        with self.lock:
            self.log.append({"host": host, "method": h.command, "path": h.path,
                             "auth": h.headers.get("Authorization"), "range": h.headers.get("Range")})

    def send(self, h, code, headers=(), body=b"", head=False):
        h.send_response(code)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def control(self, h):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(h.path).query)
        with self.lock:
            self.fault = {k: int(v[0]) for k, v in q.items()}
        self.send(h, 200)

    def repo_of(self, parts, h, head):
        """(repo name, rest of the path parts) or None after answering."""
        name = "/".join(parts[:2])
        if name in self.renamed:
            new = "/" + self.renamed[name] + "/" + "/".join(parts[2:])
            self.send(h, 307, [("Location", new)], head=head)
            return None
        r = self.repos.get(name)
        if not r:
            self.send(h, 404, [("X-Error-Code", "RepoNotFound")], b"Repository not found", head)
            return None
        if r["gated"] and h.headers.get("Authorization") != "Bearer " + TOKEN:
            self.send(h, 401, [("X-Error-Code", "GatedRepo")], b"Access to this repository is restricted", head)
            return None
        return name

    def main(self, h, head):
        self.note(h, "main")
        path = urllib.parse.unquote(urllib.parse.urlparse(h.path).path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
            name = self.repo_of(parts[2:4], h, head)
            if name is None:
                return
            if parts[5] not in ("main", self.commit(name)):
                return self.send(h, 404, [("X-Error-Code", "RevisionNotFound")], b"", head)
            r = self.repos[name]
            body = json.dumps({"id": name, "sha": r["commit"],
                               "siblings": [{"rfilename": p} for p in sorted(r["files"])]}).encode()
            return self.send(h, 200, [("Content-Type", "application/json")], body, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            name = self.repo_of(parts, h, head)
            if name is None:
                return
            r, rev, file = self.repos[name], parts[3], "/".join(parts[4:])
            if rev not in ("main", r["commit"]):
                return self.send(h, 404, [("X-Error-Code", "RevisionNotFound")], b"", head)
            if file not in r["files"]:
                return self.send(h, 404, [("X-Error-Code", "EntryNotFound")], b"Entry not found", head)
            b = r["files"][file]
            common = [("X-Repo-Commit", r["commit"])]
            if len(b) >= LFS_MIN:
                sha = hashlib.sha256(b).hexdigest()
                loc = "%s/blobs/%s?file=%s" % (self.blob_url, sha, urllib.parse.quote(file))
                return self.send(h, 302, common + [("Location", loc), ("X-Linked-Etag", '"%s"' % sha),
                                                   ("X-Linked-Size", str(len(b))), ("ETag", 'W/"not-the-sha"')],
                                 b"", head)
            return self.send(h, 200, common + [("ETag", '"%s"' % git_blob_sha1(b))], b, head)
        self.send(h, 404, [], b"", head)

    def blob(self, h, head):
        self.note(h, "blob")
        sha = urllib.parse.urlparse(h.path).path.rsplit("/", 1)[-1]
        b = self.blobs.get(sha)
        if b is None:
            return self.send(h, 404, [], b"", head)
        start, code, hdr = 0, 200, []
        rg = h.headers.get("Range")
        if rg and rg.startswith("bytes=") and rg.endswith("-"):
            start = int(rg[6:-1])
            if start >= len(b):
                return self.send(h, 416, [("Content-Range", "bytes */%d" % len(b))], b"", head)
            code, hdr = 206, [("Content-Range", "bytes %d-%d/%d" % (start, len(b) - 1, len(b)))]
        body = b[start:]
        with self.lock:
            fault, self.fault = self.fault, {}
        if head:
            return self.send(h, code, hdr, body, True)
        if fault.get("corrupt"):
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        h.send_response(code)
        for k, v in hdr:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if "drop" in fault:  # a connection lost half-way: part of the body, then closed
            h.wfile.write(body[:fault["drop"]])
            h.wfile.flush()
            h.close_connection = True
            return
        h.wfile.write(body)
