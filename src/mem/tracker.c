/* lb_mem_tracker and lb_mem_alloc: every block carries a 64-byte header (size, tag, owner, and in
 * debug mode its site and links in the live list), so free is O(1) and keeps the 64-byte
 * alignment of the user pointer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "mem/arena.h"

#define MAGIC_LIVE 0x6c62616c6c6f6321ull /* "lballoc!" */
#define MAGIC_DEAD 0x6c6266726565642eull

typedef struct hdr {
    uint64_t magic;
    uint64_t size;
    lb_mem_tracker *owner;
    const char *file;
    struct hdr *prev, *next; /* live list, debug mode only */
    uint32_t line;
    uint16_t tag;
} hdr;
_Static_assert(sizeof(hdr) <= LB_MEM_ALIGN, "header must fit the alignment gap");

struct lb_mem_tracker {
    int debug;
    lb_mem_stats st;
    hdr *live; /* debug mode: every live block */
};

lb_status lb_mem_tracker_new(unsigned flags, lb_mem_tracker **out, lb_error *err) {
    if (!out) return lb_fail(err, LB_ERR_ARG, "lb_mem_tracker_new: out is NULL");
    lb_mem_tracker *t = calloc(1, sizeof *t);
    if (!t) return lb_fail(err, LB_ERR_NOMEM, "lb_mem_tracker_new: out of memory");
    const char *env = getenv("LOWBIT_DEBUG_ALLOC");
    t->debug = (flags & LB_MEM_TRACK_DEBUG) || (env && *env && strcmp(env, "0"));
    *out = t;
    return LB_OK;
}

size_t lb_mem_tracker_leaks(const lb_mem_tracker *t, char *buf, size_t cap) {
    if (buf && cap) buf[0] = 0;
    if (!t) return 0;
    size_t used = 0;
#define PUT(...)                                                                       \
    do {                                                                               \
        if (buf && used < cap) {                                                       \
            int n_ = snprintf(buf + used, cap - used, __VA_ARGS__);                    \
            if (n_ > 0) used = used + (size_t)n_ < cap ? used + (size_t)n_ : cap;      \
        }                                                                              \
    } while (0)
    if (!t->debug) {
        if (t->st.n_live)
            PUT("%llu allocations (%llu bytes) live; set LOWBIT_DEBUG_ALLOC=1 to see where\n",
                (unsigned long long)t->st.n_live, (unsigned long long)t->st.live_bytes);
        return (size_t)t->st.n_live;
    }
    for (const hdr *h = t->live; h; h = h->next)
        PUT("%s %llu bytes at %s:%u\n", t->st.tags[h->tag].name, (unsigned long long)h->size, h->file, h->line);
#undef PUT
    return (size_t)t->st.n_live;
}

void lb_mem_tracker_free(lb_mem_tracker *t) {
    if (!t) return;
    if (t->debug && t->st.n_live) {
        char report[4096];
        lb_mem_tracker_leaks(t, report, sizeof report);
        lb_warn("%llu tracked allocations (%llu bytes) never freed:\n%s", (unsigned long long)t->st.n_live,
                (unsigned long long)t->st.live_bytes, report);
    }
    free(t);
}

void lb_mem_tracker_stats(const lb_mem_tracker *t, lb_mem_stats *out) {
    if (!out) return;
    if (!t) memset(out, 0, sizeof *out);
    else *out = t->st;
}

/* Tag slot for a name; the last slot collects everything once the table is full. */
static uint16_t tag_index(lb_mem_tracker *t, const char *tag) {
    if (!tag) tag = "untagged";
    for (int i = 0; i < t->st.n_tags; i++)
        if (!strncmp(t->st.tags[i].name, tag, sizeof t->st.tags[i].name - 1)) return (uint16_t)i;
    if (t->st.n_tags == LB_MEM_MAX_TAGS - 1) tag = "other";
    if (t->st.n_tags == LB_MEM_MAX_TAGS) return LB_MEM_MAX_TAGS - 1;
    lb_mem_tag_stats *s = &t->st.tags[t->st.n_tags];
    snprintf(s->name, sizeof s->name, "%s", tag);
    return (uint16_t)t->st.n_tags++;
}

void *lb_mem_alloc_at(lb_mem_tracker *t, size_t size, const char *tag, const char *file, int line) {
    if (!t || size > SIZE_MAX - 2 * LB_MEM_ALIGN) return NULL;
    void *raw;
    if (posix_memalign(&raw, LB_MEM_ALIGN, LB_MEM_ALIGN + (size ? size : 1))) return NULL;
    hdr *h = raw;
    *h = (hdr){.magic = MAGIC_LIVE, .size = size, .owner = t, .tag = tag_index(t, tag)};
    if (t->debug) {
        h->file = file ? file : "?";
        h->line = (uint32_t)(line > 0 ? line : 0);
        h->next = t->live;
        if (t->live) t->live->prev = h;
        t->live = h;
    }
    lb_mem_stats *s = &t->st;
    s->live_bytes += size;
    if (s->live_bytes > s->peak_bytes) s->peak_bytes = s->live_bytes;
    s->n_allocs++;
    s->n_live++;
    lb_mem_tag_stats *ts = &s->tags[h->tag];
    ts->live_bytes += size;
    if (ts->live_bytes > ts->peak_bytes) ts->peak_bytes = ts->live_bytes;
    ts->n_allocs++;
    return (char *)raw + LB_MEM_ALIGN;
}

void *lb_mem_zalloc_at(lb_mem_tracker *t, size_t size, const char *tag, const char *file, int line) {
    void *p = lb_mem_alloc_at(t, size, tag, file, line);
    if (p) memset(p, 0, size);
    return p;
}

static int in_live_list(const lb_mem_tracker *t, const hdr *h) {
    for (const hdr *x = t->live; x; x = x->next)
        if (x == h) return 1;
    return 0;
}

void lb_mem_free(lb_mem_tracker *t, void *p) {
    if (!p || !t) return;
    hdr *h = (hdr *)((char *)p - LB_MEM_ALIGN);
    /* debug mode checks membership before touching the header, so a double free is caught
     * without reading freed memory */
    if ((t->debug && !in_live_list(t, h)) || h->magic != MAGIC_LIVE || h->owner != t) {
        lb_warn("lb_mem_free: %p was not allocated by this tracker or is already free", p);
        return;
    }
    if (t->debug) {
        if (h->prev) h->prev->next = h->next;
        else t->live = h->next;
        if (h->next) h->next->prev = h->prev;
    }
    lb_mem_stats *s = &t->st;
    s->live_bytes -= h->size;
    s->n_frees++;
    s->n_live--;
    s->tags[h->tag].live_bytes -= h->size;
    h->magic = MAGIC_DEAD;
    free(h);
}

size_t lb_mem_size(const void *p) {
    if (!p) return 0;
    const hdr *h = (const hdr *)((const char *)p - LB_MEM_ALIGN);
    return h->magic == MAGIC_LIVE ? (size_t)h->size : 0;
}
