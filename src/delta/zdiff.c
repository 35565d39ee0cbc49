#include "delta/zdiff.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "core/error.h"
#include "core/threads.h"

/* Bit pattern -> integer in value order (negative floats reversed below the positive ones). */
static inline uint32_t ord32(uint32_t u) { return u & 0x80000000u ? ~u : u | 0x80000000u; }
static inline uint32_t unord32(uint32_t v) { return v & 0x80000000u ? v & 0x7fffffffu : ~v; }
static inline uint16_t ord16(uint16_t u) { return (uint16_t)(u & 0x8000u ? ~(uint32_t)u : (uint32_t)u | 0x8000u); }
static inline uint16_t unord16(uint16_t v) { return (uint16_t)(v & 0x8000u ? (uint32_t)v & 0x7fffu : ~(uint32_t)v); }

static inline uint32_t load(const uint8_t *p, uint32_t es) {
    if (es == 1) return *p; /* a quantized tensor's raw bytes: their differences wrap mod 256 */
    if (es == 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        return ord32(v);
    }
    uint16_t v;
    memcpy(&v, p, 2);
    return ord16(v);
}

/* A plane whose byte histogram is nearly flat (order-0 entropy above 7.9 bits a byte) is the
 * noise of the low mantissa bits: zstd cannot shrink it below 99% and spends most of create's
 * time trying, so it is stored raw without the attempt. */
static int looks_random(const uint8_t *p, uint32_t n) {
    uint32_t h[256] = {0};
    for (uint32_t i = 0; i < n; i++) h[p[i]]++;
    double bits = 0;
    for (int c = 0; c < 256; c++)
        if (h[c]) bits -= (double)h[c] * log2((double)h[c] / (double)n);
    return bits > 7.9 * (double)n;
}

size_t lb_zd_bound(uint32_t es, uint32_t n) { return 4u * es + 8u + es * ZSTD_compressBound(n); }

size_t lb_zd_encode(void *zc, int level, const uint8_t *a, const uint8_t *b, uint32_t es, uint32_t n, uint8_t *out,
                    uint64_t *changed) {
    uint8_t planes[4][LB_ZD_CHUNK];
    uint64_t ch = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t d = load(b + es * i, es) - load(a + es * i, es), z;
        if (es == 4) z = (d << 1) ^ (uint32_t)-(int32_t)(d >> 31);
        else if (es == 2) z = (uint16_t)((d << 1) ^ (uint32_t)-(int32_t)((d >> 15) & 1));
        else z = (uint8_t)((d << 1) ^ (uint32_t)-(int32_t)((d >> 7) & 1));
        ch += z != 0;
        for (uint32_t p = 0; p < es; p++) planes[p][i] = (uint8_t)(z >> (8 * p));
    }
    *changed = ch;
    XXH64_state_t h;
    XXH64_reset(&h, 0);
    size_t pos = 4u * es + 8u;
    for (uint32_t p = 0; p < es; p++) {
        XXH64_update(&h, planes[p], n);
        uint32_t size = 0;
        int zero = 1;
        for (uint32_t i = 0; i < n && zero; i++) zero = planes[p][i] == 0;
        if (!zero && looks_random(planes[p], n)) {
            memcpy(out + pos, planes[p], n);
            size = n;
        } else if (!zero) {
            size_t got = ZSTD_compressCCtx(zc, out + pos, ZSTD_compressBound(n), planes[p], n, level);
            if (ZSTD_isError(got)) return 0;
            if (got >= n) memcpy(out + pos, planes[p], n), got = n; /* incompressible: raw */
            size = (uint32_t)got;
        }
        memcpy(out + 4 * p, &size, 4);
        pos += size;
    }
    uint64_t hv = XXH64_digest(&h);
    memcpy(out + 4u * es, &hv, 8);
    return pos;
}

struct lb_zd_span {
    lb_pool *pool;
    int level, nth;
    ZSTD_CCtx **zc;  /* [nth] */
    uint8_t *out;    /* LB_ZD_SPAN slots of lb_zd_bound(4, LB_ZD_CHUNK) bytes */
    size_t slot, len[LB_ZD_SPAN];
    uint64_t ch[LB_ZD_SPAN];
    /* the span being encoded */
    const uint8_t *a, *b;
    uint32_t es, n_chunks;
    uint64_t cnt;
    int next; /* next chunk to take (chunks vary in cost, so threads take them one at a time) */
};

lb_zd_span *lb_zd_span_new(int n_threads, int level) {
    lb_zd_span *z = calloc(1, sizeof *z);
    if (!z) return NULL;
    z->pool = lb_pool_new(n_threads); /* NULL: one thread */
    z->nth = lb_pool_size(z->pool);
    z->level = level;
    z->slot = lb_zd_bound(4, LB_ZD_CHUNK);
    z->zc = calloc((size_t)z->nth, sizeof *z->zc);
    z->out = malloc(z->slot * LB_ZD_SPAN);
    int ok = z->zc && z->out;
    for (int i = 0; ok && i < z->nth; i++) ok = (z->zc[i] = ZSTD_createCCtx()) != NULL;
    if (!ok) lb_zd_span_free(z), z = NULL;
    return z;
}

void lb_zd_span_free(lb_zd_span *z) {
    if (!z) return;
    for (int i = 0; z->zc && i < z->nth; i++) ZSTD_freeCCtx(z->zc[i]);
    free(z->zc);
    free(z->out);
    lb_pool_free(z->pool);
    free(z);
}

static void span_job(void *arg, int ith, int nth) {
    (void)nth;
    lb_zd_span *z = arg;
    for (;;) {
        uint32_t k = (uint32_t)__atomic_fetch_add(&z->next, 1, __ATOMIC_RELAXED);
        if (k >= z->n_chunks) return;
        uint64_t i = (uint64_t)k * LB_ZD_CHUNK;
        uint32_t m = (uint32_t)(z->cnt - i < LB_ZD_CHUNK ? z->cnt - i : LB_ZD_CHUNK);
        z->len[k] = lb_zd_encode(z->zc[ith], z->level, z->a + z->es * i, z->b + z->es * i, z->es, m, z->out + z->slot * k,
                                 &z->ch[k]);
    }
}

uint32_t lb_zd_span_encode(lb_zd_span *z, const uint8_t *a, const uint8_t *b, uint32_t es, uint64_t cnt, uint64_t *changed) {
    if (cnt > (uint64_t)LB_ZD_SPAN * LB_ZD_CHUNK) return 0;
    z->a = a, z->b = b, z->es = es, z->cnt = cnt, z->next = 0;
    z->n_chunks = (uint32_t)((cnt + LB_ZD_CHUNK - 1) / LB_ZD_CHUNK);
    int nth = (int)(z->n_chunks < (uint32_t)z->nth ? z->n_chunks : (uint32_t)z->nth);
    lb_pool_run_n(z->pool, span_job, z, nth > 0 ? nth : 1);
    uint64_t ch = 0;
    for (uint32_t k = 0; k < z->n_chunks; k++) {
        if (!z->len[k]) return 0;
        ch += z->ch[k];
    }
    *changed = ch;
    return z->n_chunks;
}

const uint8_t *lb_zd_span_chunk(const lb_zd_span *z, uint32_t k, size_t *len) {
    *len = z->len[k];
    return z->out + z->slot * k;
}

size_t lb_zd_chunk_len(const uint8_t *p, size_t avail, uint32_t es, uint32_t n) {
    size_t len = 4u * es + 8u;
    if (avail < len) return 0;
    for (uint32_t k = 0; k < es; k++) {
        uint32_t s;
        memcpy(&s, p + 4 * k, 4);
        if (s > n) return 0;
        len += s;
    }
    return len <= avail ? len : 0;
}

/* Adds the zigzagged deltas of planes pl (es of them, NULL: all zero) to elements [from, to). One
 * loop per element size, so the compiler vectorizes each. */
static void add_planes(const uint8_t *const *pl, uint32_t es, uint32_t from, uint32_t to, uint8_t *dst) {
    static const uint8_t zero[LB_ZD_CHUNK];
    const uint8_t *p0 = pl[0] ? pl[0] : zero, *p1 = es > 1 && pl[1] ? pl[1] : zero;
    if (es == 1) {
        for (uint32_t i = from; i < to; i++) dst[i - from] = (uint8_t)(dst[i - from] + (uint8_t)((p0[i] >> 1) ^ -(p0[i] & 1)));
    } else if (es == 2) {
        for (uint32_t i = from; i < to; i++) {
            uint16_t z = (uint16_t)(p0[i] | p1[i] << 8), d = (uint16_t)((z >> 1) ^ -(z & 1)), u;
            memcpy(&u, dst + 2 * (i - from), 2);
            u = unord16((uint16_t)(ord16(u) + d));
            memcpy(dst + 2 * (i - from), &u, 2);
        }
    } else {
        const uint8_t *p2 = pl[2] ? pl[2] : zero, *p3 = pl[3] ? pl[3] : zero;
        for (uint32_t i = from; i < to; i++) {
            uint32_t z = (uint32_t)p0[i] | (uint32_t)p1[i] << 8 | (uint32_t)p2[i] << 16 | (uint32_t)p3[i] << 24;
            uint32_t d = (z >> 1) ^ (uint32_t)-(int32_t)(z & 1), u;
            memcpy(&u, dst + 4 * (i - from), 4);
            u = unord32(ord32(u) + d);
            memcpy(dst + 4 * (i - from), &u, 4);
        }
    }
}

lb_status lb_zd_apply(const uint8_t *p, uint32_t es, uint32_t n, uint32_t from, uint32_t to, uint8_t *dst,
                      const char *what, lb_error *err) {
    uint8_t buf[4][LB_ZD_CHUNK];
    const uint8_t *pl[4] = {NULL, NULL, NULL, NULL};
    static const uint8_t zero[LB_ZD_CHUNK];
    XXH64_state_t h;
    XXH64_reset(&h, 0);
    size_t pos = 4u * es + 8u;
    for (uint32_t k = 0; k < es; k++) {
        uint32_t s;
        memcpy(&s, p + 4 * k, 4);
        if (s == n) pl[k] = p + pos; /* stored raw: used in place */
        else if (s) {
            size_t got = ZSTD_decompress(buf[k], n, p + pos, s);
            if (ZSTD_isError(got) || got != n)
                return lb_fail(err, LB_ERR_CORRUPT, "%s: byte plane %u does not decode (corrupted delta)", what, k);
            pl[k] = buf[k];
        }
        pos += s;
        XXH64_update(&h, pl[k] ? pl[k] : zero, n);
    }
    uint64_t want;
    memcpy(&want, p + 4u * es, 8);
    if (XXH64_digest(&h) != want) return lb_fail(err, LB_ERR_CORRUPT, "%s: chunk fails its checksum (corrupted delta)", what);
    add_planes(pl, es, from, to, dst);
    return LB_OK;
}
