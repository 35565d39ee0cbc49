/* The Hub client's transfers through libcurl: HEAD without following redirects (the caller
 * follows only those on the endpoint's host, as huggingface_hub does, so the token never reaches
 * a blob host), bounded GETs into memory and resumable GETs into a file. Timeouts are on stalls,
 * not on whole transfers: a 5 GB file may take long, a dead connection may not. */
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "io/hub.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void lb_hub_url_origin(const char *url, char *out, size_t cap) {
    out[0] = 0;
    const char *p = strstr(url, "://");
    if (!p || cap < 2) return;
    const char *h = p + 3, *e = h;
    while (*e && *e != '/' && *e != '?' && *e != '#') e++;
    size_t n = (size_t)(e - url);
    if (n >= cap) return;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)url[i]);
    out[n] = 0;
}

lb_status lb_hub_conn_open(lb_hub_conn *c, const char *endpoint, const char *token, lb_error *err) {
    memset(c, 0, sizeof *c);
    pthread_once(&g_once, global_init);
    if (!(c->curl = curl_easy_init())) return lb_fail(err, LB_ERR_NOMEM, "cannot start libcurl");
    c->token = token && *token ? token : NULL;
    lb_hub_url_origin(endpoint, c->token_host, sizeof c->token_host);
    return LB_OK;
}

void lb_hub_conn_close(lb_hub_conn *c) {
    if (c->curl) curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

static size_t on_header(char *p, size_t size, size_t n, void *user) {
    lb_hub_header_line(user, p, size * n);
    return size * n;
}

/* Options every request shares; the token only for the endpoint's own origin. */
static struct curl_slist *setup(lb_hub_conn *c, const char *url, lb_hub_head *h, const char *range) {
    CURL *k = c->curl;
    curl_easy_reset(k);
    curl_easy_setopt(k, CURLOPT_URL, url);
    curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(k, CURLOPT_USERAGENT, "lowbit/" "0.1");
    curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(k, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stall of 60 s ends the transfer */
    curl_easy_setopt(k, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(k, CURLOPT_HEADERDATA, h);
    struct curl_slist *hd = curl_slist_append(NULL, "Accept-Encoding: identity");
    char origin[256], line[4200];
    lb_hub_url_origin(url, origin, sizeof origin);
    if (c->token && origin[0] && !strcmp(origin, c->token_host) && strlen(c->token) < 4096) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
        hd = curl_slist_append(hd, line);
    }
    if (range) {
        snprintf(line, sizeof line, "Range: %s", range);
        hd = curl_slist_append(hd, line);
    }
    curl_easy_setopt(k, CURLOPT_HTTPHEADER, hd);
    memset(h, 0, sizeof *h);
    return hd;
}

static lb_status finish(lb_hub_conn *c, CURLcode rc, const char *url, lb_hub_head *h, lb_error *err) {
    long st = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &st);
    if (st) h->status = st;
    c->net_fail = rc != CURLE_OK && !st;
    if (rc == CURLE_OK) return LB_OK;
    return lb_fail(err, LB_ERR_IO, "%s: %s", url, curl_easy_strerror(rc));
}

lb_status lb_hub_head_url(lb_hub_conn *c, const char *url, lb_hub_head *h, lb_error *err) {
    struct curl_slist *hd = setup(c, url, h, NULL);
    curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_slist_free_all(hd);
    return finish(c, rc, url, h, err);
}

typedef struct mem_sink {
    char *p;
    size_t n, cap, max;
} mem_sink;

static size_t on_mem(char *p, size_t size, size_t n, void *user) {
    mem_sink *m = user;
    size_t add = size * n;
    if (add > m->max - m->n) return 0; /* over the bound: the transfer fails */
    if (m->n + add + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->n + add + 1) cap *= 2;
        char *q = realloc(m->p, cap);
        if (!q) return 0;
        m->p = q, m->cap = cap;
    }
    memcpy(m->p + m->n, p, add);
    m->n += add;
    m->p[m->n] = 0;
    return add;
}

lb_status lb_hub_get_mem(lb_hub_conn *c, const char *url, size_t max, char **body, size_t *len, long *status,
                         lb_error *err) {
    lb_hub_head h;
    mem_sink m = {NULL, 0, 0, max};
    struct curl_slist *hd = setup(c, url, &h, NULL);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_mem);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &m);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_slist_free_all(hd);
    lb_status st = finish(c, rc, url, &h, err);
    if (st && rc == CURLE_WRITE_ERROR) st = lb_fail(err, LB_ERR_NOMEM, "%s: the answer is larger than %zu bytes", url, max);
    *status = h.status;
    if (st) {
        free(m.p);
        return st;
    }
    if (!m.p && !(m.p = calloc(1, 1))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    *body = m.p;
    *len = m.n;
    return LB_OK;
}

typedef struct file_sink {
    lb_hub_conn *c;
    lb_hub_head *h;
    const lb_hub_sink *s;
    int fd, checked, io_errno;
    uint64_t have, done;
} file_sink;

static size_t on_file(char *p, size_t size, size_t n, void *user) {
    file_sink *f = user;
    size_t add = size * n;
    if (!f->checked) { /* first bytes: only a 200 or a 206 from where we are may be written */
        f->checked = 1;
        if (f->h->status == 200 && f->have) {
            if (ftruncate(f->fd, 0) || lseek(f->fd, 0, SEEK_SET)) return f->io_errno = errno, 0;
            f->have = 0;
            if (f->s->restart) f->s->restart(f->s->user);
        } else if (f->h->status == 206) {
            if (!f->h->has_range || f->h->range_start != f->have) return 0;
        } else if (f->h->status != 200) return 0;
    }
    for (size_t o = 0; o < add;) {
        ssize_t w = write(f->fd, p + o, add - o);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return f->io_errno = w < 0 ? errno : ENOSPC, 0;
        o += (size_t)w;
    }
    if (f->s->data) f->s->data(f->s->user, p, add);
    f->done += add;
    if (f->s->progress) f->s->progress(f->s->progress_user, f->s->what, f->have + f->done, f->s->total);
    return add;
}

lb_status lb_hub_get_file(lb_hub_conn *c, const char *url, int fd, uint64_t have, const lb_hub_sink *sink, long *status,
                          lb_error *err) {
    lb_hub_head h;
    char range[48];
    snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)have);
    struct curl_slist *hd = setup(c, url, &h, have ? range : NULL);
    file_sink f = {c, &h, sink, fd, 0, 0, have, 0};
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_file);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &f);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_slist_free_all(hd);
    *status = h.status;
    if (rc == CURLE_WRITE_ERROR && f.io_errno)
        return lb_fail(err, LB_ERR_IO, "writing the download of %s: %s", url, strerror(f.io_errno));
    if (rc == CURLE_WRITE_ERROR && h.status == 206)
        return lb_fail(err, LB_ERR_FORMAT, "%s: the server resumed from another byte than %llu", url, (unsigned long long)have);
    if (rc == CURLE_WRITE_ERROR || (rc == CURLE_OK && h.status != 200 && h.status != 206)) return LB_OK; /* status says */
    return finish(c, rc, url, &h, err);
}
