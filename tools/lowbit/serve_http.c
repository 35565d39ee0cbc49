/* lowbit serve: HTTP by libmicrohttpd, a thread per connection (so a handler may block while its
 * request generates). Routing, the API key, body limits (Content-Length checked before a byte of
 * the body is read; a chunked body stops at the limit), a per-request deadline that closes slow
 * clients (slowloris: MHD's own timeout only counts silence), client-disconnect detection and
 * server-sent events for streamed completions. */
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "serve.h"

typedef struct conn {
    int fd;
    double deadline; /* seconds (cli_now); 0 while a request is being answered */
    struct conn *prev, *next;
} conn;

struct sv_http {
    struct MHD_Daemon *d;
    sv_server *sv;
    int port;
    pthread_t watchdog;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit, watchdog_started;
    conn *conns;
};

typedef struct req {
    int started;
    sv_body body;
} req;

/* ---- replies --------------------------------------------------------------------------------- */

static void count(sv_server *sv, int status) {
    sv->http_requests++;
    if (status >= 500) sv->http_errors_5xx++;
    else if (status >= 400) sv->http_errors_4xx++;
}

/* Queues body (malloc'ed; freed here) as the response. */
static enum MHD_Result reply(sv_http *h, struct MHD_Connection *c, int status, const char *type, char *body) {
    if (!body) {
        status = 500;
        type = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (status == 429 || status == 503) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    count(h->sv, status);
    return rc;
}

static enum MHD_Result reply_error(sv_http *h, struct MHD_Connection *c, int status, const char *msg, const char *param,
                                   const char *code) {
    return reply(h, c, status, "application/json", sv_api_error_json(status, msg, param, code));
}

/* ---- connections: deadlines and disconnects ------------------------------------------------------ */

/* After the scheduler has finished every request, a stream's last chunks ("data: [DONE]") may still
 * sit in its response queue: wait (bounded) until the connections have closed before stopping. */
void sv_http_drain(sv_http *h, double seconds) {
    double end = cli_now() + seconds;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int open = h->conns != NULL;
        pthread_mutex_unlock(&h->mu);
        if (!open || cli_now() >= end) return;
        usleep(10000);
    }
}

static conn *conn_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void set_deadline(sv_http *h, struct MHD_Connection *c, double deadline) {
    conn *k = conn_of(c);
    if (!k) return;
    pthread_mutex_lock(&h->mu);
    k->deadline = deadline;
    pthread_mutex_unlock(&h->mu);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode code) {
    sv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn *k = calloc(1, sizeof *k);
        if (!k || !ci) {
            free(k);
            return;
        }
        k->fd = ci->connect_fd;
        k->deadline = cli_now() + h->sv->request_timeout;
        pthread_mutex_lock(&h->mu);
        k->next = h->conns;
        if (h->conns) h->conns->prev = k;
        h->conns = k;
        pthread_mutex_unlock(&h->mu);
        *socket_context = k;
    } else if (*socket_context) {
        conn *k = *socket_context;
        pthread_mutex_lock(&h->mu);
        if (k->prev) k->prev->next = k->next;
        else h->conns = k->next;
        if (k->next) k->next->prev = k->prev;
        pthread_mutex_unlock(&h->mu);
        free(k);
        *socket_context = NULL;
    }
}

/* Shuts down connections that took longer than the request timeout to send their request (the
 * socket stays open for MHD to close; its read then ends and the connection thread finishes). */
static void *watchdog_main(void *arg) {
    sv_http *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->quit) {
        double now = cli_now();
        for (conn *k = h->conns; k; k = k->next)
            if (k->deadline > 0 && now > k->deadline) {
                shutdown(k->fd, SHUT_RDWR);
                k->deadline = 0;
            }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* 1 when the client closed its side (or the socket failed). */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static void *uri_log(void *cls, const char *uri, struct MHD_Connection *c) {
    return calloc(1, sizeof(req));
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
    sv_http *h = cls;
    req *q = *con_cls;
    if (q) {
        free(q->body.data);
        free(q);
        *con_cls = NULL;
    }
    set_deadline(h, c, cli_now() + h->sv->request_timeout); /* for the next request on this connection */
}

/* ---- generation ------------------------------------------------------------------------------------ */

typedef struct stream {
    sv_http *h;
    sv_request *r;
    struct MHD_Connection *c;
    char *pend;
    size_t pend_len, pend_off, sent;
    int ended;
} stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    sv_sched *sch = st->h->sv->sched;
    for (;;) {
        if (st->pend_off < st->pend_len) {
            size_t n = st->pend_len - st->pend_off < max ? st->pend_len - st->pend_off : max;
            memcpy(buf, st->pend + st->pend_off, n);
            st->pend_off += n;
            return (ssize_t)n;
        }
        free(st->pend);
        st->pend = NULL;
        st->pend_len = st->pend_off = 0;
        if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        size_t len;
        sv_finish fin;
        char *t = sv_sched_take(sch, st->r, st->sent, &len, &fin);
        if (!t) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (len) {
            st->sent += len;
            st->pend = sv_api_stream_chunk(st->h->sv, st->r, t, len, 0);
        } else if (fin == SV_FIN_ERROR) {
            char msg[256], *e;
            sv_sched_error(sch, st->r, msg, sizeof msg);
            e = sv_api_error_json(500, msg, NULL, NULL);
            size_t n = e ? strlen(e) + 32 : 0;
            if ((st->pend = e ? malloc(n) : NULL)) snprintf(st->pend, n, "data: %s\n\ndata: [DONE]\n\n", e);
            free(e);
            st->ended = 1;
        } else if (fin) {
            st->pend = sv_api_stream_final(st->h->sv, st->r, fin);
            st->ended = 1;
        }
        free(t);
        if (st->pend) {
            st->pend_len = strlen(st->pend);
            continue;
        }
        if (len || st->ended) return MHD_CONTENT_READER_END_WITH_ERROR; /* out of memory */
        if (client_gone(st->c)) {
            sv_sched_cancel(sch, st->r);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        sv_sched_wait(sch, st->r, st->sent, 250);
    }
}

static void stream_free(void *cls) {
    stream *st = cls;
    sv_sched_release(st->h->sv->sched, st->r);
    free(st->pend);
    free(st);
}

static enum MHD_Result start_stream(sv_http *h, struct MHD_Connection *c, sv_request *r) {
    stream *st = calloc(1, sizeof *st);
    if (!st) {
        sv_sched_release(h->sv->sched, r);
        return reply_error(h, c, 500, "out of memory", NULL, NULL);
    }
    st->h = h;
    st->r = r;
    st->c = c;
    if (r->chat) { /* OpenAI opens a chat stream with the assistant's role and empty content */
        st->pend = sv_api_stream_chunk(h->sv, r, "", 0, 1);
        st->pend_len = st->pend ? strlen(st->pend) : 0;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result rc = MHD_queue_response(c, 200, resp);
    MHD_destroy_response(resp);
    count(h->sv, 200);
    return rc;
}

/* Waits for the whole answer, cancelling when the client goes away. */
static enum MHD_Result finish_blocking(sv_http *h, struct MHD_Connection *c, sv_request *r) {
    sv_sched *sch = h->sv->sched;
    size_t len;
    sv_finish fin;
    for (;;) {
        free(sv_sched_take(sch, r, (size_t)-1, &len, &fin));
        if (fin) break;
        if (client_gone(c)) {
            sv_sched_release(sch, r);
            return MHD_NO;
        }
        sv_sched_wait(sch, r, (size_t)-1, 250);
    }
    char *text = sv_sched_take(sch, r, 0, &len, &fin);
    enum MHD_Result rc;
    if (fin == SV_FIN_ERROR) {
        char msg[256];
        sv_sched_error(sch, r, msg, sizeof msg);
        rc = reply_error(h, c, 500, msg, NULL, NULL);
    } else if (fin == SV_FIN_CANCELLED) {
        rc = reply_error(h, c, 503, "the server is shutting down", NULL, NULL);
    } else {
        rc = reply(h, c, 200, "application/json", text ? sv_api_response_json(h->sv, r, text, len, fin) : NULL);
    }
    free(text);
    sv_sched_release(sch, r);
    return rc;
}

static enum MHD_Result generate(sv_http *h, struct MHD_Connection *c, req *q, int chat) {
    sv_server *sv = h->sv;
    sv_request *r = calloc(1, sizeof *r);
    if (!r) return reply_error(h, c, 500, "out of memory", NULL, NULL);
    r->id = ++sv->next_id;
    r->created = (long long)time(NULL);
    char msg[512];
    const char *param, *code;
    int st = sv_api_parse(sv, q->body.data ? q->body.data : "", q->body.len, chat, r, msg, sizeof msg, &param, &code);
    if (st) {
        sv_request_free(r);
        return reply_error(h, c, st, msg, param, code);
    }
    st = sv_sched_submit(sv->sched, r);
    if (st) {
        sv_request_free(r);
        return st == 429 ? reply_error(h, c, 429, "too many requests are queued; retry later", NULL, "queue_full")
                         : reply_error(h, c, 503, "the server is not accepting requests (shutting down)", NULL, "unavailable");
    }
    return r->stream ? start_stream(h, c, r) : finish_blocking(h, c, r);
}

/* ---- routing ---------------------------------------------------------------------------------------- */

typedef enum route { R_NONE, R_PAGE, R_HEALTH, R_METRICS, R_MODELS, R_CHAT, R_COMPLETIONS, R_TOKENIZE, R_DETOKENIZE } route;

static route find_route(const char *url, const char *method, int *post) {
    static const struct {
        const char *url;
        route r;
        int post;
    } table[] = {
        {"/", R_PAGE, 0},          {"/index.html", R_PAGE, 0},          {"/health", R_HEALTH, 0},
        {"/metrics", R_METRICS, 0}, {"/v1/models", R_MODELS, 0},         {"/v1/chat/completions", R_CHAT, 1},
        {"/chat/completions", R_CHAT, 1}, {"/v1/completions", R_COMPLETIONS, 1}, {"/completions", R_COMPLETIONS, 1},
        {"/tokenize", R_TOKENIZE, 1}, {"/detokenize", R_DETOKENIZE, 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (!strcmp(url, table[i].url)) {
            *post = table[i].post;
            return table[i].r;
        }
    return R_NONE;
}

static enum MHD_Result dispatch(sv_http *h, struct MHD_Connection *c, route rt, req *q) {
    sv_server *sv = h->sv;
    char msg[512], *out = NULL;
    int st;
    switch (rt) {
    case R_PAGE: {
        char *page = malloc(sv_page_html_len + 1);
        if (page) memcpy(page, sv_page_html, sv_page_html_len), page[sv_page_html_len] = 0;
        return reply(h, c, 200, "text/html; charset=utf-8", page);
    }
    case R_HEALTH: {
        sv_metrics m;
        sv_sched_metrics(sv->sched, &m);
        return m.accepting ? reply(h, c, 200, "application/json", strdup("{\"status\":\"ok\"}"))
                           : reply(h, c, 503, "application/json", strdup("{\"status\":\"shutting down\"}"));
    }
    case R_METRICS: return reply(h, c, 200, "text/plain; version=0.0.4", sv_api_metrics_text(sv));
    case R_MODELS: return reply(h, c, 200, "application/json", sv_api_models_json(sv));
    case R_CHAT: return generate(h, c, q, 1);
    case R_COMPLETIONS: return generate(h, c, q, 0);
    case R_TOKENIZE:
    case R_DETOKENIZE:
        st = rt == R_TOKENIZE ? sv_api_tokenize(sv, q->body.data ? q->body.data : "", q->body.len, &out, msg, sizeof msg)
                              : sv_api_detokenize(sv, q->body.data ? q->body.data : "", q->body.len, &out, msg, sizeof msg);
        return st == 200 ? reply(h, c, 200, "application/json", out) : reply_error(h, c, st, msg, NULL, NULL);
    case R_NONE: break;
    }
    return reply_error(h, c, 404, "not found", NULL, NULL);
}

/* First call: route, key and declared size are checked before any of the body is read. */
static enum MHD_Result on_first(sv_http *h, struct MHD_Connection *c, const char *url, const char *method) {
    int post = 0;
    route rt = find_route(url, method, &post);
    if (rt == R_NONE) return reply_error(h, c, 404, "no such endpoint", NULL, "not_found");
    if (strcmp(method, post ? "POST" : "GET") && !(!post && !strcmp(method, "HEAD")))
        return reply_error(h, c, 405, post ? "use POST" : "use GET", NULL, "method_not_allowed");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (rt != R_HEALTH && rt != R_PAGE && !sv_auth_ok(h->sv->api_key, auth))
        return reply_error(h, c, 401, "invalid or missing API key (Authorization: Bearer KEY)", NULL, "invalid_api_key");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (sv_body_too_large(cl, h->sv->max_body)) {
        char m[128];
        snprintf(m, sizeof m, "the request body is larger than the limit of %zu bytes", h->sv->max_body);
        return reply_error(h, c, 413, m, NULL, "body_too_large");
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    sv_http *h = cls;
    req *q = *con_cls;
    if (!q) return MHD_NO;
    if (!q->started) {
        q->started = 1;
        return on_first(h, c, url, method);
    }
    if (*upload_size) {
        /* past the limit (a chunked body declares no length) or out of memory: close */
        if (sv_body_append(&q->body, upload, *upload_size, h->sv->max_body)) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    set_deadline(h, c, 0); /* the request is in: no deadline while it is answered */
    int post = 0;
    return dispatch(h, c, find_route(url, method, &post), q);
}

/* ---- start and stop ------------------------------------------------------------------------------------ */

lb_status sv_http_start(sv_server *sv, const sv_http_opts *o, sv_http **out, lb_error *err) {
    *out = NULL;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    if (getaddrinfo(o->host, port, &hints, &ai) || !ai) {
        if (err) snprintf(err->msg, sizeof err->msg, "serve: cannot resolve --host '%s'", o->host), err->status = LB_ERR_ARG;
        return LB_ERR_ARG;
    }
    sv_http *h = calloc(1, sizeof *h);
    if (!h) {
        freeaddrinfo(ai);
        if (err) *err = (lb_error){LB_ERR_NOMEM, "serve: out of memory"};
        return LB_ERR_NOMEM;
    }
    h->sv = sv;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)o->idle_timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
                            MHD_OPTION_URI_LOG_CALLBACK, uri_log, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->d) {
        sv_http_stop(h);
        if (err) snprintf(err->msg, sizeof err->msg, "serve: cannot listen on %s:%d (in use, or not an address here)", o->host, o->port), err->status = LB_ERR_IO;
        return LB_ERR_IO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : o->port;
    if (pthread_create(&h->watchdog, NULL, watchdog_main, h) == 0) h->watchdog_started = 1;
    *out = h;
    return LB_OK;
}

int sv_http_port(const sv_http *h) { return h->port; }

void sv_http_stop(sv_http *h) {
    if (!h) return;
    if (h->watchdog_started) {
        pthread_mutex_lock(&h->mu);
        h->quit = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->watchdog, NULL);
    }
    if (h->d) MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}
