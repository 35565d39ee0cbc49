/* lb_delta_create: streams base and fine-tune tensor by tensor, writes idx/val/scale records to
 * three scratch files (unlinked temp files), then writes the delta (a safetensors file) with the
 * metadata it could only know at the end. Memory: a few chunk buffers. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

#include "core/dtype.h"
#include "core/error.h"
#include "delta/deltafile.h"
#include "delta/sparse.h"
#include "delta/zdiff.h"
_Static_assert(LB_DELTA_CHUNK == (uint64_t)LB_ZD_SPAN * LB_ZD_CHUNK, "a streaming step is one span of z chunks");

lb_delta_options lb_delta_default_options(void) {
    lb_delta_options o;
    memset(&o, 0, sizeof o);
    return o;
}

enum { P_IDX = 0, P_VAL, P_SCALE, P_N };

#define SCRATCH_BUF (1u << 16)
typedef struct scratch {
    FILE *f[P_N];
    uint64_t pos[P_N];               /* bytes written, buffered ones included */
    uint8_t buf[P_N][SCRATCH_BUF];   /* small records gather here before hashing and writing */
    size_t len[P_N];
} scratch;

/* Per-tensor state while scanning. */
typedef struct scan {
    lb_delta_mode mode;
    float th;
    int type;
    uint32_t es;
    uint64_t kept, last;
    XXH64_state_t dh[P_N]; /* the delta's bytes for this tensor, per part */
    double max_err, sum_sq;
    /* int8: pending block (values, and base/fine to measure the error) */
    float pd[LB_DELTA_INT8_BLOCK], pb[LB_DELTA_INT8_BLOCK], pf[LB_DELTA_INT8_BLOCK];
    int np;
    scratch *sc;
    lb_status st;
    lb_zd_span *zs;    /* 'z' tensors: chunks encoded across threads */
    float bits;        /* sign / mixed: target bits per element */
    float *rowbuf;     /* rows: one row of differences */
    double *rowerr;    /* mixed: per-row error of the sign encoding */
} scan;

static void flush_part(scan *s, int p) {
    scratch *sc = s->sc;
    if (!sc->len[p]) return;
    XXH64_update(&s->dh[p], sc->buf[p], sc->len[p]);
    if (!s->st && fwrite(sc->buf[p], 1, sc->len[p], sc->f[p]) != sc->len[p]) s->st = LB_ERR_IO;
    sc->len[p] = 0;
}

static void flush_all(scan *s) {
    for (int p = 0; p < P_N; p++) flush_part(s, p);
}

static inline void put(scan *s, int p, const void *data, size_t n) {
    scratch *sc = s->sc;
    if (sc->len[p] + n > SCRATCH_BUF) flush_part(s, p);
    if (n > SCRATCH_BUF) { /* large pieces go straight through */
        XXH64_update(&s->dh[p], data, n);
        if (!s->st && fwrite(data, 1, n, sc->f[p]) != n) s->st = LB_ERR_IO;
    } else {
        memcpy(sc->buf[p] + sc->len[p], data, n);
        sc->len[p] += n;
    }
    sc->pos[p] += n;
}

/* The value apply will produce from base b and difference v, as a float. */
static inline float recon(int type, float b, float v) {
    if (v == 0) return b;
    float x = b + v;
    if (type == LB_F16) return lb_fp16_to_f32(lb_f32_to_fp16(x));
    if (type == LB_BF16) return lb_bf16_to_f32(lb_f32_to_bf16(x));
    return x;
}

static inline void err_add(scan *s, float r, float f) {
    double e = fabs((double)r - (double)f);
    if (e != e || isinf(e)) e = (r == f) ? 0 : INFINITY; /* inf == inf is exact */
    if (e > s->max_err) s->max_err = e;
    s->sum_sq += e * e;
}

static void flush_int8(scan *s) {
    if (!s->np) return;
    int8_t q[LB_DELTA_INT8_BLOCK];
    float scale;
    lb_error e2;
    if (lb_compress_delta_int8(s->pd, (size_t)s->np, LB_DELTA_INT8_BLOCK, q, &scale, &e2)) {
        s->st = LB_ERR_ARG;
        return;
    }
    for (int i = 0; i < s->np; i++) err_add(s, recon(s->type, s->pb[i], (float)q[i] * scale), s->pf[i]);
    put(s, P_VAL, q, (size_t)s->np);
    put(s, P_SCALE, &scale, 4);
    s->np = 0;
}

static void keep_sparse(scan *s, uint64_t i, const uint8_t *a, const uint8_t *b, float fb, float ff) {
    uint32_t gap = (uint32_t)(s->kept ? i - s->last - 1 : i);
    s->last = i;
    s->kept++;
    put(s, P_IDX, &gap, 4);
    if (s->mode == LB_DELTA_XOR) {
        uint8_t x[4];
        for (uint32_t k = 0; k < s->es; k++) x[k] = a[k] ^ b[k];
        put(s, P_VAL, x, s->es);
    } else if (s->mode == LB_DELTA_FLOAT) {
        float v = ff - fb;
        put(s, P_VAL, &v, 4);
        err_add(s, recon(s->type, fb, v), ff);
    } else {
        s->pd[s->np] = ff - fb, s->pb[s->np] = fb, s->pf[s->np] = ff;
        if (++s->np == LB_DELTA_INT8_BLOCK) flush_int8(s);
    }
}

static inline int keep_float(float d, float th) { return !(fabsf(d) <= th); }

/* Sparse pass over elements [start, start+cnt) of a chunk. */
static void scan_sparse(scan *s, const uint8_t *a, const uint8_t *b, uint64_t start, uint64_t cnt) {
    const uint32_t es = s->es;
    if (s->mode == LB_DELTA_XOR) {
        const uint64_t blk = 64;
        for (uint64_t i = 0; i < cnt; i += blk) {
            uint64_t m = cnt - i < blk ? cnt - i : blk;
            if (!memcmp(a + es * i, b + es * i, es * m)) continue;
            for (uint64_t j = i; j < i + m; j++)
                if (memcmp(a + es * j, b + es * j, es)) keep_sparse(s, start + j, a + es * j, b + es * j, 0, 0);
        }
        return;
    }
    for (uint64_t j = 0; j < cnt; j++) {
        float fb = lb_load_float(s->type, a + es * j), ff = lb_load_float(s->type, b + es * j);
        if (keep_float(ff - fb, s->th)) keep_sparse(s, start + j, a + es * j, b + es * j, fb, ff);
        else err_add(s, fb, ff);
    }
}

/* Dense pass: one value per element. */
static void scan_dense(scan *s, const uint8_t *a, const uint8_t *b, uint64_t cnt) {
    const uint32_t es = s->es;
    if (s->mode == LB_DELTA_XOR) {
        uint8_t buf[4096];
        for (uint64_t i = 0; i < cnt;) {
            uint64_t m = (cnt - i) * es < sizeof buf ? (cnt - i) * es : sizeof buf;
            for (uint64_t k = 0; k < m; k++) buf[k] = a[es * i + k] ^ b[es * i + k];
            put(s, P_VAL, buf, m);
            i += m / es;
        }
        return;
    }
    for (uint64_t j = 0; j < cnt; j++) {
        float fb = lb_load_float(s->type, a + es * j), ff = lb_load_float(s->type, b + es * j), d = ff - fb;
        if (!keep_float(d, s->th)) d = 0;
        if (s->mode == LB_DELTA_FLOAT) {
            put(s, P_VAL, &d, 4);
            err_add(s, recon(s->type, fb, d), ff);
        } else {
            s->pd[s->np] = d, s->pb[s->np] = fb, s->pf[s->np] = ff;
            if (++s->np == LB_DELTA_INT8_BLOCK) flush_int8(s);
        }
    }
}

typedef struct tinfo {
    const lb_tsrc_tensor *bt;
    char enc;                      /* version 2: 'z' or 'r' */
    uint64_t rows, cols, n8;
    uint64_t base_hash, target_hash, data_hash, kept;
    int dense;
    uint64_t off[P_N], len[P_N];
    double max_err, rms_err;
} tinfo;

static uint64_t vbytes(lb_delta_mode m, uint32_t es, uint64_t count) {
    if (m == LB_DELTA_XOR) return count * es;
    if (m == LB_DELTA_FLOAT) return count * 4;
    return count + 4 * ((count + LB_DELTA_INT8_BLOCK - 1) / LB_DELTA_INT8_BLOCK);
}

static void scan_reset(scan *s, const lb_tsrc_tensor *t) {
    s->type = t->type, s->es = t->es ? t->es : 1; /* 1: a quantized tensor's bytes (lossless 'z' only) */
    s->kept = s->last = 0;
    s->max_err = s->sum_sq = 0;
    s->np = 0;
    for (int p = 0; p < P_N; p++) XXH64_reset(&s->dh[p], 0);
}

static lb_status scratch_rewind(scratch *sc, const uint64_t *to, lb_error *err) {
    for (int p = 0; p < P_N; p++) {
        if (fflush(sc->f[p]) || ftruncate(fileno(sc->f[p]), (off_t)to[p]) || fseeko(sc->f[p], (off_t)to[p], SEEK_SET))
            return lb_fail(err, LB_ERR_IO, "delta scratch file: %s", strerror(errno));
        sc->pos[p] = to[p];
    }
    return LB_OK;
}

/* The delta tensor suffix stored from scratch part p, or NULL when that part is not stored. */
static const char *part_name(char enc, lb_delta_mode mode, int dense, int p) {
    static const char *v1[P_N] = {"idx", "val", "scale"}, *rows[P_N] = {"rowbits", "val", "scale"};
    if (enc == 'z') return p == P_VAL ? "z" : NULL;
    if (enc == 'r') return rows[p];
    if ((p == P_IDX && dense) || (p == P_SCALE && mode != LB_DELTA_INT8)) return NULL;
    return v1[p];
}

/* 'z' tensor: a span of chunks encoded across threads, then put into the value scratch in order. */
static void scan_z(scan *s, const uint8_t *a, const uint8_t *b, uint64_t cnt) {
    uint64_t ch = 0;
    uint32_t nc = lb_zd_span_encode(s->zs, a, b, s->es, cnt, &ch);
    if (!nc) s->st = LB_ERR_ARG;
    s->kept += ch;
    for (uint32_t k = 0; k < nc; k++) {
        size_t len;
        const uint8_t *p = lb_zd_span_chunk(s->zs, k, &len);
        put(s, P_VAL, p, len);
    }
}

static int by_err_desc(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

static uint64_t row_diffs(const scan *s, const lb_tsrc_tensor *bt, const lb_tsrc_tensor *ft, uint64_t r, uint64_t cols,
                          double *sum_abs, double *sum_sq) {
    uint64_t ch = 0;
    double sa = 0, sq = 0;
    for (uint64_t j = 0; j < cols; j++) {
        uint64_t g = r * cols + j;
        float d = lb_load_float(s->type, ft->data + s->es * g) - lb_load_float(s->type, bt->data + s->es * g);
        if (d != d || isinf(d)) d = 0; /* a non-finite change cannot be scaled; left out */
        s->rowbuf[j] = d;
        ch += d != 0;
        sa += fabs((double)d), sq += (double)d * d;
    }
    *sum_abs = sa, *sum_sq = sq;
    return ch;
}

/* Drops the mapped pages of rows [r0, r1) of both tensors once a sweep is done with them, so a
 * row sweep holds a few rows resident rather than both tensors (1 GB for a 1B model's embedding). */
static void release_rows(const scan *s, const lb_tsrc_tensor *bt, const lb_tsrc_tensor *ft, uint64_t r0, uint64_t r1, uint64_t cols) {
    uint64_t off = s->es * r0 * cols, len = s->es * (r1 - r0) * cols;
    lb_tsrc_release(bt->data + off, len), lb_tsrc_release(ft->data + off, len);
}

/* 'r' tensor: rows x cols, sign bits + mean |d| per row; in mixed mode the rows with the
 * largest sign-encoding error (sum d^2 - cols * mean|d|^2) get int8 values instead. Rows are
 * read twice from the mappings (pass 1 only for mixed). */
static lb_status scan_rows(scan *s, const lb_tsrc_tensor *bt, const lb_tsrc_tensor *ft, tinfo *ti, lb_error *err) {
    uint64_t rows = (uint64_t)bt->shape[0], cols = bt->n / rows, sb = lb_delta_sign_bytes(cols);
    uint8_t *bits = calloc((rows + 7) / 8, 1), *q8 = malloc(cols ? cols : 1), *sg = malloc(sb ? sb : 1);
    s->rowbuf = malloc((cols ? cols : 1) * sizeof *s->rowbuf);
    s->rowerr = s->bits > 1 ? malloc(rows * sizeof *s->rowerr) : NULL;
    double sa, sq;
    lb_status st = LB_OK;
    if (!bits || !q8 || !sg || !s->rowbuf || (s->bits > 1 && !s->rowerr)) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    uint64_t n8 = 0;
    if (!st && s->bits > 1) {
        double frac = (s->bits - 1.0) / 8.0;
        uint64_t want = (uint64_t)(frac * (double)rows + 0.5);
        if (want > rows) want = rows;
        for (uint64_t r = 0; r < rows; r++) {
            row_diffs(s, bt, ft, r, cols, &sa, &sq);
            double m = sa / (double)cols;
            s->rowerr[r] = sq - (double)cols * m * m;
            if (r % 64 == 63 || r + 1 == rows) release_rows(s, bt, ft, r - r % 64, r + 1, cols);
        }
        if (want) {
            double *sorted = malloc(rows * sizeof *sorted);
            if (!sorted) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
            else {
                memcpy(sorted, s->rowerr, rows * sizeof *sorted);
                qsort(sorted, rows, sizeof *sorted, by_err_desc);
                double cut = sorted[want - 1];
                for (uint64_t r = 0; r < rows && n8 < want; r++)
                    if (s->rowerr[r] >= cut) bits[r / 8] |= (uint8_t)(1u << (r % 8)), n8++;
                free(sorted);
            }
        }
    }
    /* the value part holds the sign bits of every row, then the int8 rows: a second sweep */
    for (int sweep = 0; sweep < 2 && !st; sweep++) {
        for (uint64_t r = 0; r < rows; r++) {
            int is8 = (bits[r / 8] >> (r % 8)) & 1;
            if (sweep == 1 && !is8) {
                if (r % 64 == 63 || r + 1 == rows) release_rows(s, bt, ft, r - r % 64, r + 1, cols);
                continue;
            }
            uint64_t ch = row_diffs(s, bt, ft, r, cols, &sa, &sq);
            float scale;
            if (is8) {
                float amax = 0;
                for (uint64_t j = 0; j < cols; j++) amax = fabsf(s->rowbuf[j]) > amax ? fabsf(s->rowbuf[j]) : amax;
                scale = amax / 127.0f;
                float inv = scale > 0 ? 1.0f / scale : 0;
                lb_delta_int8_round(s->rowbuf, (size_t)cols, inv, (int8_t *)q8);
            } else scale = (float)(sa / (double)cols);
            (void)ch;
            if (sweep == 0) {
                memset(sg, 0, sb);
                for (uint64_t j = 0; j < cols; j++) sg[j / 8] |= (uint8_t)((s->rowbuf[j] > 0) << (j % 8));
                put(s, P_VAL, sg, sb);
                put(s, P_SCALE, &scale, 4);
                for (uint64_t j = 0; j < cols; j++) {
                    uint64_t g = r * cols + j;
                    float fb = lb_load_float(s->type, bt->data + s->es * g), ff = lb_load_float(s->type, ft->data + s->es * g);
                    float v = is8 ? (float)(int8_t)q8[j] * scale : s->rowbuf[j] > 0 ? scale : -scale;
                    err_add(s, recon(s->type, fb, v), ff);
                }
            } else put(s, P_VAL, q8, cols);
            if (r % 64 == 63 || r + 1 == rows) release_rows(s, bt, ft, r - r % 64, r + 1, cols);
        }
    }
    if (!st) put(s, P_IDX, bits, (rows + 7) / 8);
    s->kept = bt->n; /* every element gets a value */
    ti->rows = rows, ti->cols = cols, ti->n8 = n8;
    free(bits), free(q8), free(sg), free(s->rowbuf), free(s->rowerr);
    s->rowbuf = NULL, s->rowerr = NULL;
    return st;
}

/* Equal bytes, compared chunk by chunk with the mapped pages dropped as they are read. */
static int same_bytes(const uint8_t *a, const uint8_t *b, uint64_t n) {
    int same = 1;
    for (uint64_t i = 0; i < n && same; i += 4 * LB_DELTA_CHUNK) {
        uint64_t m = n - i < 4 * LB_DELTA_CHUNK ? n - i : 4 * LB_DELTA_CHUNK;
        same = !memcmp(a + i, b + i, m);
        lb_tsrc_release(a + i, m), lb_tsrc_release(b + i, m);
    }
    return same;
}

/* Version 2 tensor ('z' or 'r'); t->es != 0. Unchanged tensors leave no data. One pass over
 * both mappings hashes them and, for 'z', encodes the chunks too (dropped again when nothing
 * changed), so each input page is read once and released right after. */
static lb_status do_tensor_v2(scan *s, const lb_tsrc_tensor *bt, const lb_tsrc_tensor *ft, tinfo *ti, lb_error *err) {
    XXH64_state_t hb, hf;
    XXH64_reset(&hb, 0);
    XXH64_reset(&hf, 0);
    int rows = s->mode != LB_DELTA_ZDIFF && bt->n_dims >= 2 && bt->shape[0] > 0;
    const uint64_t es = s->es; /* a quantized tensor (bt->es 0) is coded as bytes */
    ti->dense = 1;
    for (uint64_t i = 0; i < bt->n && !s->st; i += LB_DELTA_CHUNK) {
        uint64_t m = bt->n - i < LB_DELTA_CHUNK ? bt->n - i : LB_DELTA_CHUNK;
        const uint8_t *a = bt->data + es * i, *b = ft->data + es * i;
        XXH64_update(&hb, a, es * m);
        XXH64_update(&hf, b, es * m);
        if (!rows) scan_z(s, a, b, m); /* m: one span of z chunks */
        lb_tsrc_release(a, es * m), lb_tsrc_release(b, es * m);
    }
    flush_all(s);
    ti->base_hash = XXH64_digest(&hb);
    ti->target_hash = XXH64_digest(&hf);
    lb_status st = LB_OK;
    if (s->st) st = lb_fail(err, s->st, "tensor %s: encoding or writing the delta scratch file failed", bt->name);
    else if (!rows) {
        ti->enc = s->kept ? 'z' : 0; /* kept 0: every bit pattern equal */
        if (!s->kept) st = scratch_rewind(s->sc, ti->off, err);
    } else if (ti->base_hash != ti->target_hash || !same_bytes(bt->data, ft->data, bt->nbytes)) {
        ti->enc = 'r';
        st = scan_rows(s, bt, ft, ti, err);
        flush_all(s);
        if (!st && s->st) st = lb_fail(err, s->st, "tensor %s: writing the delta scratch file failed", bt->name);
    }
    return st;
}

/* Lengths, data checksum and error figures of the tensor just scanned. */
static void finish_tensor(const scan *s, const lb_tsrc_tensor *bt, tinfo *ti) {
    ti->kept = s->kept;
    ti->data_hash = 0;
    for (int p = 0; p < P_N; p++) {
        ti->len[p] = s->sc->pos[p] - ti->off[p];
        const char *nm = part_name(ti->enc, s->mode, ti->dense, p);
        if (ti->kept && nm) ti->data_hash = lb_delta_fingerprint_add(ti->data_hash, nm, XXH64_digest(&s->dh[p]));
    }
    ti->max_err = s->max_err;
    ti->rms_err = bt->n ? sqrt(s->sum_sq / (double)bt->n) : 0;
}

/* One tensor: hashes, sparse scan, and a dense rescan when that is smaller. */
static lb_status do_tensor(scan *s, const lb_tsrc_tensor *bt, const lb_tsrc_tensor *ft, tinfo *ti, lb_error *err) {
    ti->bt = bt;
    for (int p = 0; p < P_N; p++) ti->off[p] = s->sc->pos[p];
    scan_reset(s, bt);
    XXH64_state_t hb, hf;
    XXH64_reset(&hb, 0);
    XXH64_reset(&hf, 0);
    uint64_t step = bt->es ? LB_DELTA_CHUNK : LB_DELTA_CHUNK * 4, unit = bt->es ? bt->es : 1;
    int differs = 0;
    /* quantized tensors (es 0) have no float values to threshold or round: only the lossless
     * mode codes them (as raw bytes); the other modes refuse them below when they differ */
    if (s->mode == LB_DELTA_ZDIFF || (s->mode > LB_DELTA_ZDIFF && bt->es)) {
        lb_status st = do_tensor_v2(s, bt, ft, ti, err);
        if (st) return st;
        finish_tensor(s, bt, ti);
        return LB_OK;
    }
    for (uint64_t i = 0; i < bt->n; i += step) {
        uint64_t m = bt->n - i < step ? bt->n - i : step;
        const uint8_t *a = bt->data + unit * i, *b = ft->data + unit * i;
        XXH64_update(&hb, a, unit * m);
        XXH64_update(&hf, b, unit * m);
        if (bt->es) scan_sparse(s, a, b, i, m);
        else differs |= memcmp(a, b, m) != 0;
        lb_tsrc_release(a, unit * m), lb_tsrc_release(b, unit * m);
    }
    if (s->mode == LB_DELTA_INT8) flush_int8(s);
    flush_all(s);
    ti->base_hash = XXH64_digest(&hb);
    ti->target_hash = XXH64_digest(&hf);
    if (differs)
        return lb_fail(err, LB_ERR_UNSUPPORTED,
                       "tensor %s (%s) differs between base and fine-tune; lossy deltas cover F32, F16 and BF16 tensors, "
                       "a quantized tensor takes the lossless delta (the default mode)",
                       bt->name, bt->dtype);
    uint64_t sparse = s->kept * 4 + vbytes(s->mode, bt->es, s->kept), dense = vbytes(s->mode, bt->es, bt->n);
    ti->dense = s->kept && dense <= sparse;
    if (ti->dense) {
        lb_status st = scratch_rewind(s->sc, ti->off, err);
        if (st) return st;
        uint64_t kept = s->kept;
        scan_reset(s, bt);
        for (uint64_t i = 0; i < bt->n; i += step) {
            uint64_t m = bt->n - i < step ? bt->n - i : step;
            scan_dense(s, bt->data + unit * i, ft->data + unit * i, m);
            lb_tsrc_release(bt->data + unit * i, unit * m), lb_tsrc_release(ft->data + unit * i, unit * m);
        }
        if (s->mode == LB_DELTA_INT8) flush_int8(s);
        flush_all(s);
        s->kept = kept;
    }
    if (s->st) return lb_fail(err, s->st, "tensor %s: writing the delta scratch file failed", bt->name);
    finish_tensor(s, bt, ti);
    return LB_OK;
}

/* ---- writing ---- */
typedef struct part_src {
    FILE *f;
    uint64_t off, len;
} part_src;

static lb_status stream_part(void *user, lb_st_sink *sink, lb_error *err) {
    part_src *p = user;
    static const size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (!buf) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_status s = LB_OK;
    for (uint64_t done = 0; done < p->len && !s;) {
        size_t m = p->len - done < cap ? (size_t)(p->len - done) : cap;
        ssize_t r = pread(fileno(p->f), buf, m, (off_t)(p->off + done));
        if (r <= 0) s = lb_fail(err, LB_ERR_IO, "delta scratch file: short read");
        else s = lb_st_sink_write(sink, buf, (size_t)r, err), done += (uint64_t)r;
    }
    free(buf);
    return s;
}

static void hex(uint64_t v, char *b) { snprintf(b, 17, "%016" PRIx64, v); }

static cJSON *entry_json(const tinfo *ti, int has_target) {
    const lb_tsrc_tensor *t = ti->bt;
    cJSON *o = cJSON_CreateObject(), *sh = cJSON_CreateArray();
    char h[17];
    cJSON_AddStringToObject(o, "name", t->name);
    cJSON_AddStringToObject(o, "dtype", t->dtype);
    for (int i = 0; i < t->n_dims; i++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[i]));
    cJSON_AddItemToObject(o, "shape", sh);
    hex(ti->base_hash, h), cJSON_AddStringToObject(o, "base", h);
    if (has_target) hex(ti->target_hash, h), cJSON_AddStringToObject(o, "target", h);
    cJSON_AddNumberToObject(o, "kept", (double)ti->kept);
    cJSON_AddNumberToObject(o, "dense", ti->dense);
    hex(ti->data_hash, h), cJSON_AddStringToObject(o, "data", h);
    if (ti->enc) {
        char e[2] = {ti->enc, 0};
        cJSON_AddStringToObject(o, "enc", e);
    }
    if (ti->enc == 'z') cJSON_AddNumberToObject(o, "zbytes", (double)ti->len[P_VAL]);
    if (ti->enc == 'z' && !t->es) cJSON_AddNumberToObject(o, "nbytes", (double)t->nbytes); /* coded as bytes */
    if (ti->enc == 'r') {
        cJSON_AddNumberToObject(o, "rows", (double)ti->rows);
        cJSON_AddNumberToObject(o, "cols", (double)ti->cols);
        cJSON_AddNumberToObject(o, "n8", (double)ti->n8);
    }
    cJSON_AddNumberToObject(o, "max_err", ti->max_err);
    cJSON_AddNumberToObject(o, "rms_err", ti->rms_err);
    return o;
}

/* 1 when base b holds quantized tensors (a GGUF of block types): a float fine-tune must be
 * quantized the same way before the two can be compared. */
static int quantized_base(const lb_tsrc *b) {
    for (size_t i = 0; i < b->n; i++)
        if (!b->t[i].es && b->t[i].n_dims >= 2) return 1;
    return 0;
}

#define LIKE_HINT "; to code a float fine-tune against a quantized base, quantize it as the base is first: " \
                  "lowbit quantize FINETUNED FT.gguf --like BASE"

static lb_status check_pair(const lb_tsrc *b, const lb_tsrc *f, lb_error *err) {
    const char *hint = quantized_base(b) ? LIKE_HINT : "";
    if (b->kind != f->kind)
        return lb_fail(err, LB_ERR_MISMATCH, "%s and %s: base and fine-tune must be in the same format%s", b->file, f->file, hint);
    if (b->n != f->n)
        return lb_fail(err, LB_ERR_MISMATCH, "%s has %zu tensors, %s has %zu", b->file, b->n, f->file, f->n);
    for (size_t i = 0; i < b->n; i++) {
        const lb_tsrc_tensor *t = &b->t[i], *u = lb_tsrc_find(f, t->name);
        if (!u) return lb_fail(err, LB_ERR_MISMATCH, "%s: tensor %s is not in %s", b->file, t->name, f->file);
        int same = t->n_dims == u->n_dims && !strcmp(t->dtype, u->dtype) && t->nbytes == u->nbytes;
        for (int k = 0; same && k < t->n_dims; k++) same = t->shape[k] == u->shape[k];
        if (!same)
            return lb_fail(err, LB_ERR_MISMATCH, "tensor %s: dtype or shape differs between %s (%s) and %s (%s)%s", t->name,
                           b->file, t->dtype, f->file, u->dtype, t->n_dims == u->n_dims && strcmp(t->dtype, u->dtype) ? hint : "");
        if (t->n > UINT32_MAX && t->es)
            return lb_fail(err, LB_ERR_UNSUPPORTED, "tensor %s: more than 2^32 elements", t->name);
    }
    return LB_OK;
}

typedef struct writer_ctx {
    lb_safetensors_writer *w;
    part_src *parts;
    size_t n_parts;
} writer_ctx;

static lb_status add_parts(writer_ctx *c, scratch *sc, const tinfo *ti, lb_delta_mode mode, lb_error *err) {
    for (int p = 0; p < P_N; p++) {
        const char *pn = part_name(ti->enc, mode, ti->dense, p);
        if (!ti->kept || !pn) continue;
        lb_st_dtype dt = LB_ST_U32;
        uint64_t cnt = ti->len[p] / 4;
        if (ti->enc && p != P_SCALE) dt = LB_ST_U8, cnt = ti->len[p];
        else if (ti->enc) dt = LB_ST_F32;
        else if (p == P_VAL) {
            dt = mode == LB_DELTA_FLOAT ? LB_ST_F32 : mode == LB_DELTA_INT8 ? LB_ST_I8 : ti->bt->es == 4 ? LB_ST_U32 : LB_ST_U16;
            cnt = ti->len[p] / lb_st_dtype_size(dt);
        } else if (p == P_SCALE) dt = LB_ST_F32;
        char nm[1024];
        snprintf(nm, sizeof nm, "%s::%s", ti->bt->name, pn);
        part_src *ps = &c->parts[c->n_parts++];
        *ps = (part_src){sc->f[p], ti->off[p], ti->len[p]};
        int64_t shape[1] = {(int64_t)cnt};
        lb_status s = lb_safetensors_writer_add_stream(c->w, nm, dt, 1, shape, stream_part, ps, err);
        if (s) return s;
    }
    return LB_OK;
}

lb_status lb_delta_create(const char *base, const char *finetuned, const char *out, const lb_delta_options *opt,
                          lb_delta_summary *sum, lb_error *err) {
    lb_delta_options dflt = lb_delta_default_options();
    if (!opt) opt = &dflt;
    if (!(opt->threshold >= 0) || isinf(opt->threshold))
        return lb_fail(err, LB_ERR_ARG, "delta threshold must be a finite number >= 0");
    if (!(opt->bits == 0 || (opt->bits >= 1 && opt->bits <= 9)))
        return lb_fail(err, LB_ERR_ARG, "delta bits %g: 0 (off), 1 (sign) or up to 9 (mixed sign/int8 rows)", (double)opt->bits);
    if (opt->bits > 0 && (opt->int8 || opt->threshold > 0 || opt->raw))
        return lb_fail(err, LB_ERR_ARG, "delta bits cannot be combined with threshold, int8 or raw");
    if (opt->level < 0 || opt->level > 22) return lb_fail(err, LB_ERR_ARG, "delta zstd level %d is not in 1..22", opt->level);
    const char *ins[] = {base, finetuned};
    lb_status s0 = lb_output_check(out, ins, 2, 0, err);
    if (s0) return s0;
    lb_delta_summary sm;
    memset(&sm, 0, sizeof sm);
    scan sn;
    memset(&sn, 0, sizeof sn);
    lb_tsrc *b = NULL, *f = NULL;
    scratch *scp = calloc(1, sizeof *scp);
    if (!scp) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    tinfo *ti = NULL;
    writer_ctx wc = {0};
    cJSON *arr = NULL;
    char *js = NULL;
    lb_status s = lb_tsrc_open(base, &b, err);
    if (!s) s = lb_tsrc_open(finetuned, &f, err);
    if (!s) s = check_pair(b, f, err);
    for (int p = 0; p < P_N && !s; p++)
        if (!(scp->f[p] = tmpfile())) s = lb_fail(err, LB_ERR_IO, "cannot create a scratch file: %s", strerror(errno));
    if (!s && (!(ti = calloc(b->n ? b->n : 1, sizeof *ti)) || !(wc.parts = calloc(3 * b->n + 1, sizeof *wc.parts))))
        s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (s) goto done;
    lb_tsrc_advise_sequential(b);
    lb_tsrc_advise_sequential(f);
    sn.mode = opt->int8 ? LB_DELTA_INT8 : opt->threshold > 0 ? LB_DELTA_FLOAT : opt->raw ? LB_DELTA_XOR : LB_DELTA_ZDIFF;
    if (opt->bits > 0) sn.mode = opt->bits > 1 ? LB_DELTA_MIXED : LB_DELTA_SIGN;
    sn.th = opt->threshold;
    sn.sc = scp;
    sn.bits = opt->bits;
    if (sn.mode >= LB_DELTA_ZDIFF && !(sn.zs = lb_zd_span_new(opt->n_threads, opt->level ? opt->level : 3))) {
        s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    uint64_t total = 0, done = 0, fpb = 0, fpt = 0;
    double sq = 0;
    for (size_t i = 0; i < b->n; i++) total += b->t[i].nbytes;
    for (size_t i = 0; i < b->n && !s; i++) {
        const lb_tsrc_tensor *bt = &b->t[i], *ft = lb_tsrc_find(f, bt->name);
        if (opt->progress) opt->progress(opt->progress_ud, bt->name, done, total);
        if ((s = do_tensor(&sn, bt, ft, &ti[i], err))) break;
        lb_tsrc_release(bt->data, bt->nbytes);
        lb_tsrc_release(ft->data, ft->nbytes);
        done += bt->nbytes;
        fpb = lb_delta_fingerprint_add(fpb, bt->name, ti[i].base_hash);
        fpt = lb_delta_fingerprint_add(fpt, bt->name, ti[i].target_hash);
        sm.n_tensors++, sm.n_elements += bt->n, sm.n_kept += ti[i].kept, sm.dense_bytes += bt->nbytes;
        sm.n_changed += ti[i].kept > 0;
        if (ti[i].max_err > sm.max_abs_err) sm.max_abs_err = ti[i].max_err;
        sq += ti[i].rms_err * ti[i].rms_err * (double)bt->n;
        if (opt->report) {
            lb_delta_tensor_report r = {bt->name, bt->dtype, bt->n, ti[i].kept, ti[i].len[0] + ti[i].len[1] + ti[i].len[2],
                                        ti[i].dense, ti[i].max_err, ti[i].rms_err};
            opt->report(opt->report_ud, &r);
        }
    }
    if (s) goto done;
    if (opt->progress) opt->progress(opt->progress_ud, "writing", total, total);
    sm.rms_err = sm.n_elements ? sqrt(sq / (double)sm.n_elements) : 0;
    for (int p = 0; p < P_N && !s; p++)
        if (fflush(scp->f[p])) s = lb_fail(err, LB_ERR_IO, "delta scratch file: %s", strerror(errno));
    if (!s) s = lb_safetensors_writer_new(&wc.w, err);
    if (s) goto done;
    int has_target = sn.mode == LB_DELTA_XOR || sn.mode == LB_DELTA_ZDIFF;
    arr = cJSON_CreateArray();
    for (size_t i = 0; i < b->n && !s; i++) {
        cJSON_AddItemToArray(arr, entry_json(&ti[i], has_target));
        s = add_parts(&wc, scp, &ti[i], sn.mode, err);
    }
    if (s) goto done;
    if (!(js = cJSON_PrintUnformatted(arr))) {
        s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        goto done;
    }
    char num[64], h[17];
    struct { const char *k; char v[64]; } kv[8];
    int nk = 0;
#define KV(key, ...) (kv[nk].k = key, snprintf(kv[nk].v, sizeof kv[nk].v, __VA_ARGS__), nk++)
    KV("format", "lowbit.delta");
    KV("version", "%d", sn.mode >= LB_DELTA_ZDIFF ? 2 : 1);
    KV("mode", "%s", lb_delta_mode_name(sn.mode));
    KV("threshold", "%.9g", (double)opt->threshold);
    KV("block", "%d", LB_DELTA_INT8_BLOCK);
    KV("base_format", "%s", b->kind == 'g' ? "gguf" : "safetensors");
    hex(fpb, h), KV("base_fingerprint", "%s", h);
    if (has_target) hex(fpt, h), KV("target_fingerprint", "%s", h);
#undef KV
    (void)num;
    for (int i = 0; i < nk && !s; i++) s = lb_safetensors_writer_set_meta(wc.w, kv[i].k, kv[i].v, err);
    if (!s) s = lb_safetensors_writer_set_meta(wc.w, "tensors", js, err);
    if (!s && f->st) { /* the fine-tune's own __metadata__, so apply rewrites its header exactly */
        cJSON *fm = cJSON_CreateObject();
        for (size_t i = 0; i < lb_safetensors_n_meta(f->st); i++)
            cJSON_AddStringToObject(fm, lb_safetensors_meta_key(f->st, i), lb_safetensors_meta_value(f->st, i));
        char *t = cJSON_PrintUnformatted(fm);
        s = t ? lb_safetensors_writer_set_meta(wc.w, "target_metadata", t, err) : lb_fail(err, LB_ERR_NOMEM, "out of memory");
        free(t);
        cJSON_Delete(fm);
    }
    if (!s && b->g && f->g) { /* the fine-tune's own GGUF metadata (general.name, ...), so apply keeps it */
        char *img = NULL, *drop = NULL;
        s = lb_delta_gguf_meta_encode(b->g, f->g, &img, &drop, err);
        if (!s && img) s = lb_safetensors_writer_set_meta(wc.w, "target_gguf", img, err);
        if (!s && drop) s = lb_safetensors_writer_set_meta(wc.w, "target_gguf_drop", drop, err);
        free(img);
        free(drop);
    }
    if (!s) s = lb_safetensors_writer_write(wc.w, out, err);
    if (!s) {
        struct stat st;
        if (stat(out, &st) == 0) sm.delta_bytes = (uint64_t)st.st_size;
    }
done:
    lb_zd_span_free(sn.zs);
    free(js);
    cJSON_Delete(arr);
    if (wc.w) lb_safetensors_writer_free(wc.w);
    free(wc.parts);
    free(ti);
    for (int p = 0; p < P_N; p++)
        if (scp->f[p]) fclose(scp->f[p]);
    lb_tsrc_close(b);
    lb_tsrc_close(f);
    free(scp);
    if (!s && sum) *sum = sm;
    return s;
}
