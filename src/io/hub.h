/* Internal to the Hub client (hub.c, hub_http.c, hub_parse.c): parsed references, the
 * response metadata of one file, and the libcurl transfers. The parsers take untrusted bytes
 * (the user's reference, the Hub's headers and JSON) and are what fuzz/fuzz_hub.c exercises. */
#ifndef LB_IO_HUB_H
#define LB_IO_HUB_H
#include <stddef.h>
#include <stdint.h>

#include "lowbit.h"

#define LB_HUB_NAME_MAX 96   /* OWNER and NAME each, as the Hub allows */
#define LB_HUB_PATH_MAX 1024 /* a file path inside a repository */

typedef struct lb_hub_ref {
    char owner[LB_HUB_NAME_MAX + 1], name[LB_HUB_NAME_MAX + 1];
    char revision[256];       /* "main" when none was given */
    char spec[LB_HUB_PATH_MAX + 1]; /* FILE or QUANT, "" for none */
    int spec_is_file;
} lb_hub_ref;

/* "[hf://]OWNER/NAME[@REV][:FILE|:QUANT]": names of [A-Za-z0-9._-] (not "." or ".."), FILE a
 * safe relative path (lb_hub_safe_path). */
lb_status lb_hub_parse_ref(const char *s, lb_hub_ref *r, lb_error *err);
/* 1 when p is a relative path whose every component is a plain name (no "", ".", "..", no
 * backslash or control bytes): safe to join under a cache folder. */
int lb_hub_safe_path(const char *p);
/* 1 when s is n lowercase (or any case) hex digits */
int lb_hub_is_hex(const char *s, size_t n);

/* What one HEAD (or GET) answer said about a file. */
typedef struct lb_hub_head {
    long status;
    char commit[64];       /* X-Repo-Commit */
    char etag[160];        /* X-Linked-Etag, else ETag: W/ and quotes removed */
    char location[2048];   /* Location of a redirect */
    uint64_t size;         /* X-Linked-Size, else Content-Length */
    int has_size, linked;  /* linked: X-Linked-* headers seen (an LFS file) */
    uint64_t range_start;  /* Content-Range of a 206: the first byte sent */
    int has_range;
} lb_hub_head;

/* Folds one raw header line ("Name: value\r\n", or the status line) into h; other lines are
 * ignored, values too long for their field leave the field empty. */
void lb_hub_header_line(lb_hub_head *h, const char *line, size_t n);
/* An ETag value without W/ and quotes, when what is left is [A-Za-z0-9._-] (usable as a file
 * name): 1 and out set; else 0. */
int lb_hub_norm_etag(const char *in, size_t n, char *out, size_t cap);
/* The API's model info JSON: "sha" (the commit, 40 hex) and "siblings"[].rfilename (only the
 * safe paths). *names: malloc'ed array of malloc'ed strings, freed by lb_hub_free_names. */
lb_status lb_hub_parse_siblings(const char *json, size_t len, char *sha, size_t sha_cap, char ***names, size_t *n,
                                lb_error *err);
void lb_hub_free_names(char **names, size_t n);
/* Picks the files of r->spec from the repository's names (see lowbit/hub.h): *pick is a malloc'ed
 * array of indices into names; *folder 1 for a safetensors model (the snapshot folder is the
 * path). Errors list the GGUF files when the choice is ambiguous or empty. */
lb_status lb_hub_pick(const lb_hub_ref *r, char *const *names, size_t n, size_t **pick, size_t *n_pick, int *folder,
                      lb_error *err);

/* ---- transfers (hub_http.c) ---------------------------------------------------------------- */
typedef struct lb_hub_conn {
    void *curl;
    const char *token;      /* sent only to token_host */
    char token_host[256];
    int net_fail;           /* the last transfer failed before any HTTP answer (no network) */
} lb_hub_conn;

lb_status lb_hub_conn_open(lb_hub_conn *c, const char *endpoint, const char *token, lb_error *err);
void lb_hub_conn_close(lb_hub_conn *c);
/* HEAD url, no redirect followed (the caller decides): status and headers into h. */
lb_status lb_hub_head_url(lb_hub_conn *c, const char *url, lb_hub_head *h, lb_error *err);
/* GET url into a malloc'ed NUL-terminated body of at most max bytes. */
lb_status lb_hub_get_mem(lb_hub_conn *c, const char *url, size_t max, char **body, size_t *len, long *status,
                         lb_error *err);
/* GET url appended to the open file fd, which holds `have` bytes (sent as a Range); each byte
 * written goes through sink(user, data, n) first (the hash). A 200 answer to a Range request
 * truncates fd and calls restart(user) (the hash starts again). */
typedef struct lb_hub_sink {
    void (*data)(void *user, const void *p, size_t n);
    void (*restart)(void *user);
    void *user;
    lb_progress_fn progress;
    void *progress_user;
    const char *what;
    uint64_t total;
} lb_hub_sink;
lb_status lb_hub_get_file(lb_hub_conn *c, const char *url, int fd, uint64_t have, const lb_hub_sink *sink, long *status,
                          lb_error *err);
/* "scheme://host[:port]" of url into out (lowercase host), "" when it has none. */
void lb_hub_url_origin(const char *url, char *out, size_t cap);

#endif
