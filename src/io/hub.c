/* Models from the Hugging Face Hub (lowbit/hub.h): resolve a reference to local files in
 * huggingface_hub's cache layout, downloading what is missing.
 *   models--OWNER--NAME/blobs/<etag>                 the bytes (<etag>.incomplete while coming)
 *   models--OWNER--NAME/snapshots/<commit>/<file>    -> ../../blobs/<etag> (relative symlink)
 *   models--OWNER--NAME/refs/<revision>              the commit, no newline
 *   .locks/models--OWNER--NAME/<etag>.lock           one downloader per blob (flock)
 * A blob gets its final name only after its size and hash (sha256 of an LFS file, the git blob
 * sha1 of the others) match what the Hub said, so a partial or corrupt file is never used. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mapfile.h"
#include "io/hub.h"

#define API_MAX ((size_t)32 << 20) /* bytes of model info JSON accepted */

lb_hub_params lb_hub_default_params(void) {
    lb_hub_params p = {NULL, NULL, NULL, -1, NULL, NULL};
    return p;
}

int lb_hub_is_ref(const char *s) { return s && !strncmp(s, "hf://", 5); }

typedef struct hub {
    lb_hub_ref r;
    const lb_hub_params *p;
    char endpoint[1024], origin[256];
    const char *token;
    char *repo_dir, *lock_dir;
    lb_hub_conn conn;
} hub;

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

static int mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i]) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

static char *cache_root(const lb_hub_params *p) {
    const char *e;
    if (p->cache_dir && *p->cache_dir) return strdup(p->cache_dir);
    if ((e = getenv("HF_HUB_CACHE")) && *e) return strdup(e);
    if ((e = getenv("HF_HOME")) && *e) return fmt("%s/hub", e);
    if ((e = getenv("XDG_CACHE_HOME")) && *e) return fmt("%s/huggingface/hub", e);
    if ((e = getenv("HOME")) && *e) return fmt("%s/.cache/huggingface/hub", e);
    return NULL;
}

static int env_true(const char *name) {
    const char *e = getenv(name);
    return e && (!strcmp(e, "1") || !strcasecmp(e, "true") || !strcasecmp(e, "yes") || !strcasecmp(e, "on"));
}

/* Percent-encodes s; keep_slash for paths inside the repository (a revision is encoded whole). */
static void url_enc(char *out, size_t cap, const char *s, int keep_slash) {
    static const char hx[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) out[o++] = (char)c;
        else out[o++] = '%', out[o++] = hx[c >> 4], out[o++] = hx[c & 15];
    }
    out[o] = 0;
}

static lb_status http_error(const hub *h, long status, const char *what, lb_error *err) {
    if (status == 401 || status == 403)
        return lb_fail(err, LB_ERR_IO, "%s/%s: the Hub refused %s (HTTP %ld): %s", h->r.owner, h->r.name, what, status,
                       h->token ? "HF_TOKEN was sent; it may lack access to this repository"
                                : "no token was sent; set HF_TOKEN for a gated or private repository");
    if (status == 404)
        return lb_fail(err, LB_ERR_IO, "%s/%s: %s not found on %s (HTTP 404): check the repository, revision '%s' and file name",
                       h->r.owner, h->r.name, what, h->endpoint, h->r.revision);
    return lb_fail(err, LB_ERR_IO, "%s/%s: %s: unexpected HTTP status %ld from %s", h->r.owner, h->r.name, what, status,
                   h->endpoint);
}

/* ---- hashing ------------------------------------------------------------------------------ */

typedef struct hasher {
    EVP_MD_CTX *ctx;
    const EVP_MD *md;
    uint64_t size;
    int git;
} hasher;

static void hash_restart(void *u) {
    hasher *x = u;
    if (!x->ctx) return;
    EVP_DigestInit_ex(x->ctx, x->md, NULL);
    if (x->git) { /* a git blob id is sha1("blob <size>\0" + bytes) */
        char pre[40];
        int n = snprintf(pre, sizeof pre, "blob %llu", (unsigned long long)x->size);
        EVP_DigestUpdate(x->ctx, pre, (size_t)n + 1);
    }
}

static void hash_data(void *u, const void *p, size_t n) {
    hasher *x = u;
    if (x->ctx) EVP_DigestUpdate(x->ctx, p, n);
}

/* The hash an etag stands for: 64 hex digits sha256 (LFS), 40 the git blob sha1, else none. */
static int hash_open(hasher *x, const char *etag, uint64_t size, int has_size) {
    memset(x, 0, sizeof *x);
    size_t n = strlen(etag);
    if (n == 64 && lb_hub_is_hex(etag, 64)) x->md = EVP_sha256();
    else if (n == 40 && lb_hub_is_hex(etag, 40) && has_size) x->md = EVP_sha1(), x->git = 1;
    else return 0;
    x->size = size;
    if (!(x->ctx = EVP_MD_CTX_new())) return -1;
    hash_restart(x);
    return 0;
}

static int hash_matches(hasher *x, const char *etag, char *got, size_t cap) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(x->ctx, d, &n);
    for (unsigned i = 0; i < n && 2 * i + 2 < cap; i++) snprintf(got + 2 * i, 3, "%02x", d[i]);
    return !strcasecmp(got, etag);
}

static void hash_close(hasher *x) {
    if (x->ctx) EVP_MD_CTX_free(x->ctx);
    x->ctx = NULL;
}

static int hash_file_prefix(hasher *x, int fd, uint64_t n) {
    char buf[1 << 16];
    for (uint64_t o = 0; o < n;) {
        ssize_t r = pread(fd, buf, n - o < sizeof buf ? (size_t)(n - o) : sizeof buf, (off_t)o);
        if (r <= 0) return -1;
        hash_data(x, buf, (size_t)r);
        o += (uint64_t)r;
    }
    return 0;
}

/* ---- one file -------------------------------------------------------------------------------- */

/* HEAD of resolve/REV/FILE, following redirects on the endpoint's origin only; *url: where the
 * bytes are (the blob host's Location, or the resolve URL itself). */
static lb_status file_meta(hub *h, const char *rev, const char *file, lb_hub_head *m, char **url, lb_error *err) {
    char erev[768], efile[3 * LB_HUB_PATH_MAX + 1];
    url_enc(erev, sizeof erev, rev, 0);
    url_enc(efile, sizeof efile, file, 1);
    char *u = fmt("%s/%s/%s/resolve/%s/%s", h->endpoint, h->r.owner, h->r.name, erev, efile);
    for (int hop = 0; u; hop++) {
        lb_status st = lb_hub_head_url(&h->conn, u, m, err);
        if (st) return free(u), st;
        if (m->status < 300 || m->status >= 400 || !m->location[0]) break;
        char origin[256];
        lb_hub_url_origin(m->location, origin, sizeof origin);
        if (m->location[0] != '/' && strcmp(origin, h->origin)) break; /* the blob host: its URL is where to GET */
        if (hop == 10) {
            lb_fail(err, LB_ERR_IO, "%s: too many redirects", u);
            free(u);
            return LB_ERR_IO;
        }
        char *next = m->location[0] == '/' ? fmt("%s%s", h->origin, m->location) : strdup(m->location);
        free(u);
        u = next;
    }
    if (!u) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (m->status >= 400 || (m->status >= 300 && !m->location[0])) {
        free(u);
        char what[LB_HUB_PATH_MAX + 16];
        snprintf(what, sizeof what, "file '%s'", file);
        return http_error(h, m->status, what, err);
    }
    if (!m->etag[0] || strlen(m->commit) != 40 || !lb_hub_is_hex(m->commit, 40)) {
        free(u);
        return lb_fail(err, LB_ERR_FORMAT, "%s/%s: the answer for '%s' lacks a usable ETag or X-Repo-Commit header (not a Hub endpoint?)",
                       h->r.owner, h->r.name, file);
    }
    *url = m->status >= 300 ? strdup(m->location) : u;
    if (m->status >= 300) free(u);
    return *url ? LB_OK : lb_fail(err, LB_ERR_NOMEM, "out of memory");
}

static lb_status fetch_blob(hub *h, const lb_hub_head *m, const char *url, const char *file, const char *blob,
                            lb_error *err) {
    hasher x;
    if (hash_open(&x, m->etag, m->size, m->has_size)) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    char *inc = fmt("%s.incomplete", blob);
    int fd = inc ? open(inc, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;
    lb_status st = fd < 0 ? lb_fail(err, LB_ERR_IO, "%s: cannot create: %s", inc ? inc : blob, strerror(errno)) : LB_OK;
    struct stat sb;
    uint64_t have = 0;
    if (!st && !fstat(fd, &sb)) have = (uint64_t)sb.st_size;
    if (!st && m->has_size && have > m->size) have = 0, st = ftruncate(fd, 0) ? lb_fail(err, LB_ERR_IO, "%s: %s", inc, strerror(errno)) : LB_OK;
    if (!st && have && hash_file_prefix(&x, fd, have)) st = lb_fail(err, LB_ERR_IO, "%s: cannot read: %s", inc, strerror(errno));
    if (!st && lseek(fd, (off_t)have, SEEK_SET) < 0) st = lb_fail(err, LB_ERR_IO, "%s: %s", inc, strerror(errno));
    if (!st && (!m->has_size || have < m->size)) {
        if (have) lb_info("resuming %s at %llu bytes", file, (unsigned long long)have);
        lb_hub_sink sink = {hash_data, hash_restart, &x, h->p->progress, h->p->progress_user, file, m->size};
        long status = 0;
        lb_status gst = lb_hub_get_file(&h->conn, url, fd, have, &sink, &status, err);
        if (!gst && status != 200 && status != 206) st = http_error(h, status, "the download", err);
        else if (gst == LB_ERR_IO && !fstat(fd, &sb) && sb.st_size > 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        st = lb_fail(err, LB_ERR_IO, "%s/%s: download of '%s' interrupted at %llu of %llu bytes (%s); run again to resume",
                     h->r.owner, h->r.name, file, (unsigned long long)sb.st_size, (unsigned long long)m->size, why);
        } else st = gst;
    }
    uint64_t got = !st && !fstat(fd, &sb) ? (uint64_t)sb.st_size : 0;
    if (!st && m->has_size && got != m->size)
        st = lb_fail(err, LB_ERR_IO, "%s/%s: download of '%s' ended at %llu of %llu bytes; run again to resume", h->r.owner, h->r.name, file,
                     (unsigned long long)got, (unsigned long long)m->size);
    char hex[2 * EVP_MAX_MD_SIZE + 1] = "";
    if (!st && x.ctx && !hash_matches(&x, m->etag, hex, sizeof hex)) {
        unlink(inc); /* resuming a corrupt file would only repeat the failure */
        st = lb_fail(err, LB_ERR_CORRUPT, "%s/%s: download of '%s' does not match the Hub's %s (got %s, want %s); removed it",
                     h->r.owner, h->r.name, file, x.git ? "git blob hash" : "sha256", hex, m->etag);
    }
    if (!st && (fsync(fd) || rename(inc, blob))) st = lb_fail(err, LB_ERR_IO, "%s: cannot finish: %s", blob, strerror(errno));
    if (fd >= 0) close(fd);
    hash_close(&x);
    free(inc);
    return st;
}

/* path = snapshots/<commit>/<file> -> ../../blobs/<etag> (one more ../ per folder of file), replaced atomically */
static lb_status link_snapshot(const char *path, const char *file, const char *etag, lb_error *err) {
    char *dir = strdup(path);
    /* one "../" per '/' of file: a file of LB_HUB_PATH_MAX bytes has fewer than LB_HUB_PATH_MAX / 2 */
    char target[3 * LB_HUB_PATH_MAX / 2 + 16 + sizeof ((lb_hub_head *)0)->etag] = "../../";
    for (const char *c = file; *c; c++)
        if (*c == '/') strcat(target, "../");
    strcat(target, "blobs/");
    strcat(target, etag);
    lb_status st = dir ? LB_OK : lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st) *strrchr(dir, '/') = 0;
    char *tmp = !st ? fmt("%s.lowbit-tmp.%d", path, (int)getpid()) : NULL;
    if (!st && (!tmp || mkdirs(dir))) st = lb_fail(err, LB_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    if (!st) {
        unlink(tmp);
        if (symlink(target, tmp) || rename(tmp, path)) {
            st = lb_fail(err, LB_ERR_IO, "%s: cannot link: %s", path, strerror(errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(dir);
    return st;
}

static int is_file(const char *p) {
    struct stat sb;
    return !stat(p, &sb) && S_ISREG(sb.st_mode);
}

/* One file at a commit: nothing when its snapshot link resolves, else the blob (downloaded under
 * its lock unless another process finished it meanwhile) and the link. *commit_out: the commit. */
static lb_status get_one(hub *h, const char *rev, const char *file, char *commit_out, lb_error *err) {
    lb_hub_head m;
    char *url = NULL;
    lb_status st = file_meta(h, rev, file, &m, &url, err);
    if (st) return st;
    strcpy(commit_out, m.commit);
    char *blob = fmt("%s/blobs/%s", h->repo_dir, m.etag), *lock = fmt("%s/%s.lock", h->lock_dir, m.etag);
    char *snap = fmt("%s/snapshots/%s/%s", h->repo_dir, m.commit, file);
    if (!blob || !lock || !snap) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st && !is_file(blob)) {
        char *bd = fmt("%s/blobs", h->repo_dir);
        int lfd = -1;
        if (!bd || mkdirs(bd) || mkdirs(h->lock_dir) || (lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0 || flock(lfd, LOCK_EX))
            st = lb_fail(err, LB_ERR_IO, "%s: cannot prepare the cache: %s", bd ? bd : h->repo_dir, strerror(errno));
        if (!st && !is_file(blob)) st = fetch_blob(h, &m, url, file, blob, err);
        if (lfd >= 0) close(lfd); /* releases the lock */
        free(bd);
    }
    if (!st && !is_file(snap)) st = link_snapshot(snap, file, m.etag, err);
    free(blob), free(lock), free(snap), free(url);
    return st;
}

/* ---- refs, offline lookups ------------------------------------------------------------------ */

static lb_status write_ref(hub *h, const char *commit, lb_error *err) {
    if (!strcmp(h->r.revision, commit)) return LB_OK;
    char *path = fmt("%s/refs/%s", h->repo_dir, h->r.revision), *dir = path ? strdup(path) : NULL;
    char *old = NULL;
    size_t n = 0;
    lb_status st = path && dir ? LB_OK : lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st && !lb_read_file(path, 256, &old, &n, NULL) && n == 40 && !memcmp(old, commit, 40)) goto done;
    *strrchr(dir, '/') = 0;
    lb_atomic_file *f = NULL;
    if (mkdirs(dir)) st = lb_fail(err, LB_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    if (!st) st = lb_atomic_open(path, &f, err);
    if (!st && (st = lb_atomic_write(f, commit, 40, err))) f = NULL; /* write failures abort f */
    if (!st) st = lb_atomic_commit(f, err);
done:
    free(old), free(dir), free(path);
    return st;
}

static lb_status cached_commit(hub *h, char *commit, lb_error *err) {
    if (strlen(h->r.revision) == 40 && lb_hub_is_hex(h->r.revision, 40)) {
        strcpy(commit, h->r.revision);
        return LB_OK;
    }
    char *path = fmt("%s/refs/%s", h->repo_dir, h->r.revision), *s = NULL;
    size_t n = 0;
    lb_status st = path ? lb_read_file(path, 256, &s, &n, NULL) : LB_ERR_NOMEM;
    if (!st && (n != 40 || !lb_hub_is_hex(s, 40))) st = LB_ERR_FORMAT;
    if (!st) memcpy(commit, s, 41);
    else lb_fail(err, LB_ERR_IO, "%s/%s@%s is not in the cache (looked for %s)", h->r.owner, h->r.name, h->r.revision, path ? path : h->repo_dir);
    free(s), free(path);
    return st ? LB_ERR_IO : LB_OK;
}

/* Files of a snapshot folder (relative paths, two folder levels deep at most). */
static int list_dir(const char *root, const char *rel, int depth, char ***names, size_t *n, size_t *cap) {
    char *dir = rel[0] ? fmt("%s/%s", root, rel) : strdup(root);
    DIR *d = dir ? opendir(dir) : NULL;
    free(dir);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)) && *n < 100000) {
        if (e->d_name[0] == '.') continue;
        char *r = rel[0] ? fmt("%s/%s", rel, e->d_name) : strdup(e->d_name), *full = r ? fmt("%s/%s", root, r) : NULL;
        struct stat sb;
        if (!r || !full) rc = -1;
        else if (!stat(full, &sb) && S_ISDIR(sb.st_mode) && depth < 2) rc = list_dir(root, r, depth + 1, names, n, cap);
        else if (!stat(full, &sb) && S_ISREG(sb.st_mode) && lb_hub_safe_path(r)) {
            if (*n == *cap) {
                size_t c2 = *cap ? *cap * 2 : 16;
                char **q = realloc(*names, c2 * sizeof *q);
                if (!q) rc = -1;
                else *names = q, *cap = c2;
            }
            if (!rc) (*names)[(*n)++] = r, r = NULL;
        }
        free(r), free(full);
    }
    closedir(d);
    return rc;
}

static lb_status resolve_offline(hub *h, char **path, lb_error *err) {
    char commit[41];
    lb_status st = cached_commit(h, commit, err);
    if (st) return st;
    char *snap = fmt("%s/snapshots/%s", h->repo_dir, commit);
    if (!snap) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (h->r.spec_is_file) {
        char *f = fmt("%s/%s", snap, h->r.spec);
        free(snap);
        if (f && is_file(f)) return *path = f, LB_OK;
        st = lb_fail(err, LB_ERR_IO, "%s/%s: '%s' is not in the cache (looked for %s)", h->r.owner, h->r.name, h->r.spec, f ? f : "");
        free(f);
        return st;
    }
    char **names = NULL;
    size_t n = 0, cap = 0, *pick = NULL, np = 0;
    int folder = 0;
    if (list_dir(snap, "", 0, &names, &n, &cap)) st = lb_fail(err, LB_ERR_IO, "%s: cannot read the cached snapshot", snap);
    if (!st) st = lb_hub_pick(&h->r, names, n, &pick, &np, &folder, err);
    if (!st) *path = folder ? strdup(snap) : fmt("%s/%s", snap, names[pick[0]]);
    if (!st && !*path) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_hub_free_names(names, n);
    free(pick), free(snap);
    return st;
}

/* The repository's file list at the revision (and its commit) from the Hub's API. */
static lb_status api_files(hub *h, char *commit, char ***names, size_t *n, lb_error *err) {
    char erev[768];
    url_enc(erev, sizeof erev, h->r.revision, 0);
    char *url = fmt("%s/api/models/%s/%s/revision/%s", h->endpoint, h->r.owner, h->r.name, erev), *body = NULL;
    size_t len = 0;
    long status = 0;
    lb_status st = url ? lb_hub_get_mem(&h->conn, url, API_MAX, &body, &len, &status, err) : lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st && status != 200) st = http_error(h, status, "the repository", err);
    if (!st) st = lb_hub_parse_siblings(body, len, commit, 41, names, n, err);
    if (!st && !commit[0]) st = lb_fail(err, LB_ERR_FORMAT, "%s: the model info has no commit (\"sha\")", url);
    free(body), free(url);
    return st;
}

static lb_status resolve_online(hub *h, char **path, lb_error *err) {
    char commit[41] = "", got[64];
    if (h->r.spec_is_file) {
        lb_status st = get_one(h, h->r.revision, h->r.spec, commit, err);
        if (!st) st = write_ref(h, commit, err);
        if (!st && !(*path = fmt("%s/snapshots/%s/%s", h->repo_dir, commit, h->r.spec))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        return st;
    }
    char **names = NULL;
    size_t n = 0, *pick = NULL, np = 0;
    int folder = 0;
    lb_status st = api_files(h, commit, &names, &n, err);
    if (!st) st = lb_hub_pick(&h->r, names, n, &pick, &np, &folder, err);
    for (size_t i = 0; !st && i < np; i++) { /* every file at the listed commit: one consistent snapshot */
        st = get_one(h, commit, names[pick[i]], got, err);
        if (!st && strcmp(got, commit))
            st = lb_fail(err, LB_ERR_FORMAT, "%s/%s: '%s' came from commit %s, not %s", h->r.owner, h->r.name, names[pick[i]], got, commit);
    }
    if (!st) st = write_ref(h, commit, err);
    if (!st) *path = folder ? fmt("%s/snapshots/%s", h->repo_dir, commit) : fmt("%s/snapshots/%s/%s", h->repo_dir, commit, names[pick[0]]);
    if (!st && !*path) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_hub_free_names(names, n);
    free(pick);
    return st;
}

static lb_status hub_open(hub *h, const char *ref, const lb_hub_params *p, lb_error *err) {
    memset(h, 0, sizeof *h);
    h->p = p;
    lb_status st = lb_hub_parse_ref(ref, &h->r, err);
    if (st) return st;
    const char *ep = p->endpoint && *p->endpoint ? p->endpoint : getenv("HF_ENDPOINT");
    snprintf(h->endpoint, sizeof h->endpoint, "%s", ep && *ep ? ep : "https://huggingface.co");
    for (size_t n = strlen(h->endpoint); n && h->endpoint[n - 1] == '/'; n--) h->endpoint[n - 1] = 0;
    lb_hub_url_origin(h->endpoint, h->origin, sizeof h->origin);
    if (!h->origin[0]) return lb_fail(err, LB_ERR_ARG, "HF_ENDPOINT '%s' is not a URL", h->endpoint);
    h->token = p->token && *p->token ? p->token : getenv("HF_TOKEN");
    if (h->token && !*h->token) h->token = NULL;
    char *root = cache_root(p);
    if (!root) return lb_fail(err, LB_ERR_ARG, "no Hub cache folder: set HF_HOME or HF_HUB_CACHE");
    h->repo_dir = fmt("%s/models--%s--%s", root, h->r.owner, h->r.name);
    h->lock_dir = fmt("%s/.locks/models--%s--%s", root, h->r.owner, h->r.name);
    free(root);
    return h->repo_dir && h->lock_dir ? LB_OK : lb_fail(err, LB_ERR_NOMEM, "out of memory");
}

lb_status lb_hub_resolve(const char *ref, const lb_hub_params *params, char **path, lb_error *err) {
    lb_hub_params dflt = lb_hub_default_params();
    const lb_hub_params *p = params ? params : &dflt;
    *path = NULL;
    hub h;
    lb_status st = hub_open(&h, ref, p, err);
    int offline = p->offline >= 0 ? p->offline : env_true("HF_HUB_OFFLINE");
    if (!st && offline) st = resolve_offline(&h, path, err);
    else if (!st && !(st = lb_hub_conn_open(&h.conn, h.endpoint, h.token, err))) {
        lb_error net;
        st = resolve_online(&h, path, &net);
        /* no network (not an HTTP answer): a cached copy still serves, as with huggingface_hub */
        if (st == LB_ERR_IO && h.conn.net_fail && !resolve_offline(&h, path, NULL)) {
            lb_warn("%s; using the cached copy", net.msg);
            st = LB_OK;
        } else if (st && err) *err = net;
        lb_hub_conn_close(&h.conn);
    }
    free(h.repo_dir), free(h.lock_dir);
    return st;
}
