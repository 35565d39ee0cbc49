/* Version 2 delta files: the lossless zstd-plane encoding ('z') round trips bit for bit (F32 with
 * sign crossings, NaN and inf, F16, BF16), is smaller than the raw XOR form on a dense small
 * change, patches ranges in any order, and refuses a damaged chunk; the 1-bit sign mode equals a
 * scalar twin (base + sign(d) * mean|d| per row); the mixed mode gives int8 to exactly the rows
 * the twin ranks worst under sign encoding, within half an int8 step there; threads change
 * neither the file nor the result. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "check.h"
#include "core/dtype.h"
#include "delta/deltafile.h"
#include "delta/zdiff.h"
#include "io/safetensors.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

enum { R = 40, C = 1000, NA = R * C, NB = 3000, BR = 30, BC = 77, NC = BR * BC };
static float ab[NA], af[NA], ao[NA];
static uint16_t bb[NB], bf[NB], bo[NB], cb[NC], cf[NC], co[NC];

static void make_pair(void) {
    for (int i = 0; i < NA; i++) {
        ab[i] = (float)(rnd() - 0.5) * 0.1f;
        /* every element moves a little; row r's change grows with r, and a few rows get a
         * spiky (far from uniform |d|) change, so sign errors differ between rows */
        int r = i / C;
        double amp = 1e-3 * (1 + r % 7) * (r % 9 == 4 && i % 13 == 0 ? 30 : 1);
        af[i] = ab[i] + (float)((rnd() - 0.5) * amp);
    }
    ab[5] = 1e-4f, af[5] = -1e-4f;       /* sign crossing */
    ab[7] = NAN, af[7] = 1.0f;           /* NaN and inf in both directions */
    ab[9] = 1.0f, af[9] = INFINITY;
    ab[11] = -INFINITY, af[11] = -INFINITY;
    for (int i = 0; i < NB; i++) {
        bb[i] = lb_f32_to_fp16((float)(rnd() - 0.5));
        bf[i] = lb_f32_to_fp16(lb_fp16_to_f32(bb[i]) + (float)(rnd() - 0.5) * 0.002f);
    }
    for (int i = 0; i < NC; i++) {
        cb[i] = lb_f32_to_bf16((float)(rnd() - 0.5));
        cf[i] = lb_f32_to_bf16(lb_bf16_to_f32(cb[i]) + (float)(rnd() - 0.5) * 0.01f);
    }
    cb[0] = 0, cf[0] = 0x8000; /* +0 -> -0 */
}

static void write_st(const char *path, const float *a, const uint16_t *b, const uint16_t *c) {
    lb_safetensors_writer *w;
    lb_error err;
    int64_t s0[2] = {R, C}, s1[1] = {NB}, s2[2] = {BR, BC};
    lb_safetensors_writer_new(&w, &err);
    lb_safetensors_writer_add(w, "a.weight", LB_ST_F32, 2, s0, a, &err);
    lb_safetensors_writer_add(w, "b.norm", LB_ST_F16, 1, s1, b, &err);
    lb_safetensors_writer_add(w, "c.weight", LB_ST_BF16, 2, s2, c, &err);
    CHECK(lb_safetensors_writer_write(w, path, &err) == LB_OK, "%s", err.msg);
    lb_safetensors_writer_free(w);
}

static int read_back(const char *path) {
    lb_safetensors *st;
    lb_error err;
    if (lb_safetensors_open(path, &st, &err)) return 0;
    memcpy(ao, lb_safetensors_info(st, 0)->data, sizeof ao);
    memcpy(bo, lb_safetensors_info(st, 1)->data, sizeof bo);
    memcpy(co, lb_safetensors_info(st, 2)->data, sizeof co);
    lb_safetensors_close(st);
    return 1;
}

static long fsize(const char *p) {
    struct stat s;
    return stat(p, &s) ? -1 : (long)s.st_size;
}

/* The twin: mean |d| of row r of a (finite changes only, as the encoder). */
static double row_mean_abs(int r, double *err_sign) {
    double sa = 0, sq = 0;
    for (int j = 0; j < C; j++) {
        double d = (double)(af[r * C + j] - ab[r * C + j]);
        if (!isfinite(d)) d = 0;
        sa += fabs(d), sq += d * d;
    }
    double m = sa / C;
    if (err_sign) *err_sign = sq - C * m * m;
    return m;
}

static int same_file(const char *x, const char *y) {
    long n = fsize(x);
    if (n <= 0 || n != fsize(y)) return 0;
    FILE *a = fopen(x, "rb"), *b = fopen(y, "rb");
    int same = a && b;
    for (long i = 0; same && i < n; i++) same = fgetc(a) == fgetc(b);
    if (a) fclose(a);
    if (b) fclose(b);
    return same;
}

/* Threads change neither the file create writes nor what a threaded patch gives: chunks are
 * encoded on 1 and 3 threads, and the F32 tensor patched whole on 3 threads. */
static void test_threads(const char *pb, const char *pf, const char *dir) {
    char p1[96], p3[96];
    snprintf(p1, sizeof p1, "%s/t1.delta", dir), snprintf(p3, sizeof p3, "%s/t3.delta", dir);
    lb_delta_options o = lb_delta_default_options();
    lb_error err;
    o.n_threads = 1;
    CHECK(lb_delta_create(pb, pf, p1, &o, NULL, &err) == LB_OK, "%s", err.msg);
    o.n_threads = 3;
    CHECK(lb_delta_create(pb, pf, p3, &o, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(same_file(p1, p3), "create on 1 and 3 threads writes the same bytes");
    lb_delta *d;
    CHECK(lb_delta_open(p3, &d, &err) == LB_OK && lb_delta_use_threads(d, 3, &err) == LB_OK, "%s", err.msg);
    memcpy(ao, ab, sizeof ao);
    lb_delta_cursor c;
    lb_status s = lb_delta_cursor_init(d, &d->e[0], &c, &err);
    if (!s) s = lb_delta_patch(d, &d->e[0], &c, (uint8_t *)ao, 0, NA, &err);
    CHECK(s == LB_OK && !memcmp(ao, af, sizeof af), "threaded patch: %s", s ? err.msg : "ok");
    lb_delta_close(d);
    unlink(p1), unlink(p3);
}

static void test_chunk_codec(void) {
    /* a chunk whose low plane is noise (stored raw): damage it, then the header */
    static float a[LB_ZD_CHUNK], b[LB_ZD_CHUNK], o[LB_ZD_CHUNK];
    for (uint32_t i = 0; i < LB_ZD_CHUNK; i++) a[i] = (float)(rnd() - 0.5), b[i] = a[i] + (float)(rnd() - 0.5) * 1e-3f;
    size_t cap = lb_zd_bound(4, LB_ZD_CHUNK);
    uint8_t *z = malloc(cap);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    uint64_t ch;
    size_t len = lb_zd_encode(zc, 3, (const uint8_t *)a, (const uint8_t *)b, 4, LB_ZD_CHUNK, z, &ch);
    CHECK(len > 0 && ch == LB_ZD_CHUNK, "encode: %zu bytes, %llu changed", len, (unsigned long long)ch);
    CHECK(lb_zd_chunk_len(z, len, 4, LB_ZD_CHUNK) == len, "chunk length");
    CHECK(lb_zd_chunk_len(z, len - 1, 4, LB_ZD_CHUNK) == 0, "truncated chunk refused");
    lb_error err;
    memcpy(o, a, sizeof o);
    CHECK(lb_zd_apply(z, 4, LB_ZD_CHUNK, 0, LB_ZD_CHUNK, (uint8_t *)o, "c", &err) == LB_OK && !memcmp(o, b, sizeof o), "chunk round trip");
    /* part of a chunk: elements [100, 200) only */
    memcpy(o, a, sizeof o);
    CHECK(lb_zd_apply(z, 4, LB_ZD_CHUNK, 100, 200, (uint8_t *)(o + 100), "c", &err) == LB_OK, "%s", err.msg);
    CHECK(!memcmp(o + 100, b + 100, 400) && !memcmp(o, a, 400) && !memcmp(o + 200, a + 200, 400), "partial chunk");
    uint32_t s0;
    memcpy(&s0, z, 4);
    CHECK(s0 == LB_ZD_CHUNK, "the noise plane is stored raw (%u bytes)", s0);
    z[4 * 4 + 8 + 17] ^= 0x40; /* a byte of the raw plane */
    CHECK(lb_zd_apply(z, 4, LB_ZD_CHUNK, 0, LB_ZD_CHUNK, (uint8_t *)o, "c", &err) == LB_ERR_CORRUPT && strstr(err.msg, "checksum"),
          "damaged chunk refused: %s", err.msg);
    uint32_t big = LB_ZD_CHUNK + 1;
    memcpy(z + 4, &big, 4);
    CHECK(lb_zd_chunk_len(z, len, 4, LB_ZD_CHUNK) == 0, "oversized plane refused");
    ZSTD_freeCCtx(zc);
    free(z);
}

/* 1-byte elements (a quantized tensor's raw bytes): every difference mod 256, wrap-arounds
 * (0x00 -> 0xff, 0xff -> 0x00) included, and a partial range, restore the fine-tune's bytes. */
static void test_byte_codec(void) {
    static uint8_t a[LB_ZD_CHUNK], b[LB_ZD_CHUNK], o[LB_ZD_CHUNK];
    for (uint32_t i = 0; i < LB_ZD_CHUNK; i++) {
        a[i] = (uint8_t)(rnd() * 256);
        int step = i % 7 == 0 ? 0 : (int)(rnd() * 9) - 4;
        b[i] = (uint8_t)(a[i] + step);
        if (i == 5) a[i] = 0x00, b[i] = 0xff;
        if (i == 6) a[i] = 0xff, b[i] = 0x00;
        if (i == 8) a[i] = 0x10, b[i] = 0x90; /* the largest move, -128 mod 256 */
    }
    size_t cap = lb_zd_bound(1, LB_ZD_CHUNK);
    uint8_t *z = malloc(cap);
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    uint64_t ch, want = 0;
    for (uint32_t i = 0; i < LB_ZD_CHUNK; i++) want += a[i] != b[i];
    size_t len = lb_zd_encode(zc, 3, a, b, 1, LB_ZD_CHUNK, z, &ch);
    CHECK(len > 0 && len < LB_ZD_CHUNK && ch == want, "byte encode: %zu bytes, %llu changed of %llu", len,
          (unsigned long long)ch, (unsigned long long)want);
    CHECK(lb_zd_chunk_len(z, len, 1, LB_ZD_CHUNK) == len, "byte chunk length");
    lb_error err;
    memcpy(o, a, sizeof o);
    CHECK(lb_zd_apply(z, 1, LB_ZD_CHUNK, 0, LB_ZD_CHUNK, o, "c", &err) == LB_OK && !memcmp(o, b, sizeof o), "byte round trip");
    memcpy(o, a, sizeof o);
    CHECK(lb_zd_apply(z, 1, LB_ZD_CHUNK, 3, 4000, o + 3, "c", &err) == LB_OK && !memcmp(o + 3, b + 3, 3997) &&
              !memcmp(o, a, 3) && !memcmp(o + 4000, a + 4000, LB_ZD_CHUNK - 4000),
          "partial byte chunk");
    ZSTD_freeCCtx(zc);
    free(z);
}

int main(void) {
    make_pair();
    test_chunk_codec();
    test_byte_codec();
    char dir[] = "/tmp/test_delta_v2_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char pb[64], pf[64], pd[64], pr[64], po[64];
    snprintf(pb, sizeof pb, "%s/base.st", dir), snprintf(pf, sizeof pf, "%s/ft.st", dir);
    snprintf(pd, sizeof pd, "%s/d.delta", dir), snprintf(pr, sizeof pr, "%s/raw.delta", dir);
    snprintf(po, sizeof po, "%s/out.st", dir);
    write_st(pb, ab, bb, cb);
    write_st(pf, af, bf, cf);
    lb_error err;
    lb_delta_summary sum;
    lb_delta_options o = lb_delta_default_options();

    test_threads(pb, pf, dir);
    /* lossless default ('z') and raw XOR (version 1): both exact, z smaller */
    CHECK(lb_delta_create(pb, pf, pd, NULL, &sum, &err) == LB_OK, "%s", err.msg);
    o.raw = 1;
    CHECK(lb_delta_create(pb, pf, pr, &o, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(fsize(pd) > 0 && fsize(pd) * 1.3 < fsize(pr), "zstd planes %ld bytes vs raw xor %ld", fsize(pd), fsize(pr));
    for (int k = 0; k < 2; k++) {
        unlink(po);
        CHECK(lb_delta_apply(pb, k ? pr : pd, po, NULL, NULL, &err) == LB_OK, "%s", err.msg);
        CHECK(read_back(po) && !memcmp(ao, af, sizeof af) && !memcmp(bo, bf, sizeof bf) && !memcmp(co, cf, sizeof cf),
              "lossless round trip (%s)", k ? "raw" : "z");
    }
    lb_delta *d;
    CHECK(lb_delta_open(pd, &d, &err) == LB_OK && d->version == 2 && d->mode == LB_DELTA_ZDIFF, "open v2: %s", err.msg);
    /* random access: the F32 tensor patched in three ranges out of order */
    const lb_delta_entry *e = &d->e[0];
    CHECK(e->enc == 'z' && e->n == NA, "entry a is 'z'");
    memcpy(ao, ab, sizeof ao);
    lb_delta_cursor c;
    uint64_t rg[3][2] = {{20000, NA}, {0, 5003}, {5003, 20000}};
    lb_status s = lb_delta_cursor_init(d, e, &c, &err);
    for (int k = 0; k < 3 && !s; k++)
        s = lb_delta_patch(d, e, &c, (uint8_t *)(ao + rg[k][0]), rg[k][0], rg[k][1] - rg[k][0], &err);
    CHECK(s == LB_OK && !memcmp(ao, af, sizeof af), "out-of-order ranges: %s", s ? err.msg : "ok");
    lb_delta_close(d);
    /* a damaged byte in the data is refused at open */
    FILE *f = fopen(pd, "r+b");
    long at = fsize(pd) - 100;
    fseek(f, at, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(ch ^ 0x21, f);
    fclose(f);
    CHECK(lb_delta_open(pd, &d, &err) == LB_ERR_CORRUPT, "damaged delta refused: %s", err.msg);

    /* 1-bit sign: the twin, row by row; the 1-D F16 tensor stays exact */
    o = lb_delta_default_options();
    o.bits = 1;
    CHECK(lb_delta_create(pb, pf, pd, &o, &sum, &err) == LB_OK, "%s", err.msg);
    unlink(po);
    CHECK(lb_delta_apply(pb, pd, po, NULL, NULL, &err) == LB_OK && read_back(po), "%s", err.msg);
    double worst = 0, sq_sign = 0;
    for (int r = 0; r < R; r++) {
        double m = row_mean_abs(r, NULL);
        for (int j = 0; j < C; j++) {
            int i = r * C + j;
            if (i == 7 || i == 9 || i == 11) continue; /* non-finite: base + scale, checked below */
            double want = (double)ab[i] + ((af[i] - ab[i]) > 0 ? m : -m);
            worst = fmax(worst, fabs((double)ao[i] - want) / (fabs(want) + 1e-3));
            sq_sign += ((double)ao[i] - af[i]) * ((double)ao[i] - af[i]);
        }
    }
    CHECK(worst < 1e-5, "sign twin: worst relative difference %g", worst);
    CHECK(!memcmp(bo, bf, sizeof bf), "1-D tensor lossless in sign mode");
    double mb = 0; /* BF16 matrix: the twin within one bf16 rounding */
    for (int j = 0; j < BC; j++) mb += fabs(lb_bf16_to_f32(cf[j]) - lb_bf16_to_f32(cb[j]));
    mb /= BC;
    for (int j = 1; j < BC; j++) {
        float d0 = lb_bf16_to_f32(cf[j]) - lb_bf16_to_f32(cb[j]);
        double want = lb_bf16_to_f32(cb[j]) + (d0 > 0 ? mb : -mb);
        CHECK(fabs(lb_bf16_to_f32(co[j]) - want) <= fabs(want) / 128 + 1e-6, "bf16 sign row 0 element %d", j);
    }

    /* mixed at 2 bits: 1/8 of the rows (5 of 40) int8, exactly the twin's worst five */
    o.bits = 2;
    CHECK(lb_delta_create(pb, pf, pd, &o, &sum, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_delta_open(pd, &d, &err) == LB_OK && d->mode == LB_DELTA_MIXED, "open mixed: %s", err.msg);
    e = &d->e[0];
    CHECK(e->enc == 'r' && e->rows == R && e->cols == C && e->n8 == 5, "rows %llu x %llu, %llu int8", (unsigned long long)e->rows,
          (unsigned long long)e->cols, (unsigned long long)e->n8);
    double es[R];
    for (int r = 0; r < R; r++) row_mean_abs(r, &es[r]);
    for (int r = 0; r < R; r++) {
        int above = 0;
        for (int q = 0; q < R; q++) above += es[q] > es[r];
        int is8 = (e->rowbits[r / 8] >> (r % 8)) & 1;
        CHECK(is8 == (above < 5), "row %d: int8 %d, %d rows have larger sign error", r, is8, above);
    }
    lb_delta_close(d);
    unlink(po);
    CHECK(lb_delta_apply(pb, pd, po, NULL, NULL, &err) == LB_OK && read_back(po), "%s", err.msg);
    double sq_mixed = 0;
    for (int i = 0; i < NA; i++)
        if (i != 7 && i != 9 && i != 11) sq_mixed += ((double)ao[i] - af[i]) * ((double)ao[i] - af[i]);
    CHECK(sq_mixed < 0.5 * sq_sign, "mixed error %g well below sign error %g", sq_mixed, sq_sign);

    /* bad options */
    o.bits = 0.5f;
    CHECK(lb_delta_create(pb, pf, pd, &o, NULL, &err) == LB_ERR_ARG, "bits 0.5 refused");
    o.bits = 1, o.int8 = 1;
    CHECK(lb_delta_create(pb, pf, pd, &o, NULL, &err) == LB_ERR_ARG, "bits with int8 refused");

    unlink(pb), unlink(pf), unlink(pd), unlink(pr), unlink(po), rmdir(dir);
    return test_summary();
}
