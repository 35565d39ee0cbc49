/* Compression: byte planes (scalar vs AVX2 vs the definition), codec round trips, and the .lbz
 * container on a synthetic model file: bit-exact restores with both codecs and 1-3 threads,
 * random access, and corrupted / truncated / forged files rejected without output left behind. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "check.h"
#include "compress/byteplane.h"
#include "compress/codec.h"
#include "compress/lbz.h"
#include "core/dtype.h"

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double unif(void) { return ((double)(rnd() >> 11) + 0.5) / 9007199254740992.0; }
static float gauss(float std) { return (float)(std * sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif())); }

static char g_dir[64];
typedef struct path { char s[256]; } path;
static path pathof(const char *name) {
    path p;
    snprintf(p.s, sizeof p.s, "%s/%s", g_dir, name);
    return p;
}
#define path_in(name) (pathof(name).s)
static int write_file(const char *p, const void *d, size_t n) {
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    int ok = fwrite(d, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}
static unsigned char *read_all(const char *p, size_t *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}
static int exists(const char *p) { return access(p, F_OK) == 0; }
/* no temp file of an atomic write (.NAME.lowbit-tmp.PID.XXXXXX) left in the test folder */
static int temp_files(void) {
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".lowbit-tmp.") != NULL;
    closedir(d);
    return n;
}

static void test_byteplane(void) {
    size_t sizes[] = {0, 1, 2, 7, 31, 32, 33, 63, 64, 65, 100, 1000, 4097, 65536 + 13};
    int avx2 = lb_cpu_has_avx2();
    printf("byteplane: avx2 %s\n", avx2 ? "yes" : "no (scalar only)");
    for (size_t e = 1; e <= 4; e *= 2)
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            size_t n = sizes[k], nb = n * e;
            unsigned char *src = malloc(nb + 1), *a = malloc(nb + 1), *b = malloc(nb + 1), *r = malloc(nb + 1);
            for (size_t i = 0; i < nb; i++) src[i] = (unsigned char)rnd();
            lb_byteplane_split_scalar(src, a, n, e);
            int def = 1;
            for (size_t i = 0; i < n; i++)
                for (size_t p = 0; p < e; p++) def &= a[p * n + i] == src[i * e + p];
            CHECK(def, "scalar split matches the definition (e=%zu n=%zu)", e, n);
            lb_byteplane_merge_scalar(a, r, n, e);
            CHECK(memcmp(r, src, nb) == 0, "scalar merge inverts split (e=%zu n=%zu)", e, n);
            if (avx2) {
                memset(b, 0xAA, nb + 1);
                lb_byteplane_split_avx2(src, b, n, e);
                CHECK(memcmp(a, b, nb) == 0 && b[nb] == 0xAA, "avx2 split == scalar (e=%zu n=%zu)", e, n);
                memset(r, 0x55, nb + 1);
                lb_byteplane_merge_avx2(a, r, n, e);
                CHECK(memcmp(r, src, nb) == 0 && r[nb] == 0x55, "avx2 merge == original (e=%zu n=%zu)", e, n);
            }
            lb_byteplane_split(src, b, n, e);
            lb_byteplane_merge(b, r, n, e);
            CHECK(memcmp(r, src, nb) == 0, "dispatching round trip (e=%zu n=%zu)", e, n);
            free(src), free(a), free(b), free(r);
        }
}

static void test_codec(void) {
    lb_codec_ctx *ctx;
    lb_error err;
    CHECK(lb_codec_ctx_new(&ctx, &err) == LB_OK, "-");
    size_t n = 200000;
    unsigned char *rand_b = malloc(n), *zero = calloc(1, n), *text = malloc(n);
    for (size_t i = 0; i < n; i++) rand_b[i] = (unsigned char)rnd(), text[i] = "the cat sat on a mat. "[i % 22];
    const unsigned char *inputs[] = {rand_b, zero, text};
    const char *names[] = {"random", "zeros", "text"};
    lb_codec codecs[] = {LB_CODEC_ZSTD, LB_CODEC_LZ4};
    int levels[] = {1, 3, 9};
    for (int c = 0; c < 2; c++)
        for (int l = 0; l < 3; l++)
            for (int k = 0; k < 3; k++) {
                size_t cap = lb_codec_bound(codecs[c], n), got = 0;
                unsigned char *buf = malloc(cap), *back = malloc(n);
                lb_codec used;
                lb_status s = lb_codec_compress(ctx, codecs[c], levels[l], inputs[k], n, buf, cap, &got, &used, &err);
                CHECK(s == LB_OK, "%s", err.msg);
                if (k == 0) CHECK(used == LB_CODEC_STORED && got == n, "random data is stored (%s)", lb_codec_name(codecs[c]));
                else CHECK(used == codecs[c] && got < n / 20, "%s %s: %zu bytes", lb_codec_name(codecs[c]), names[k], got);
                s = lb_codec_decompress(ctx, used, buf, got, back, n, &err);
                CHECK(s == LB_OK && memcmp(back, inputs[k], n) == 0, "%s %s round trip", lb_codec_name(codecs[c]), names[k]);
                if (used != LB_CODEC_STORED) {
                    CHECK(lb_codec_decompress(ctx, used, buf, got, back, n - 1, &err) == LB_ERR_CORRUPT, "short output rejected");
                    CHECK(lb_codec_decompress(ctx, used, buf, got / 2, back, n, &err) == LB_ERR_CORRUPT, "truncated rejected");
                }
                free(buf), free(back);
            }
    unsigned char out[64];
    CHECK(lb_codec_decompress(ctx, LB_CODEC_ZSTD, rand_b, 1000, out, 64, &err) == LB_ERR_CORRUPT, "garbage zstd");
    CHECK(lb_codec_decompress(ctx, LB_CODEC_LZ4, rand_b, 1000, out, 64, &err) == LB_ERR_CORRUPT, "garbage lz4");
    CHECK(lb_codec_decompress(ctx, (lb_codec)7, rand_b, 10, out, 10, &err) == LB_ERR_CORRUPT, "unknown codec id");
    lb_codec_ctx_free(ctx);
    free(rand_b), free(zero), free(text);
}

/* ---- a synthetic "model file": header, F32, opaque, F16, opaque, BF16, tail ---- */
typedef struct model {
    unsigned char *data;
    size_t size;
    lb_lbz_region reg[4];
    size_t n_reg;
} model;

static void put_region(model *m, size_t *pos, uint32_t es, size_t n_elems, int explicit_opaque) {
    lb_lbz_region r = {*pos, n_elems * es, es};
    for (size_t i = 0; i < n_elems; i++) {
        float v = gauss(0.02f);
        unsigned char *p = m->data + *pos + i * es;
        if (es == 4) memcpy(p, &v, 4);
        else {
            uint16_t h = es == 2 && m->n_reg == 1 ? lb_f32_to_fp16(v) : lb_f32_to_bf16(v);
            memcpy(p, &h, 2);
        }
    }
    if (es > 1 || explicit_opaque) m->reg[m->n_reg++] = r;
    *pos += n_elems * es;
}

static void make_model(model *m) {
    size_t hdr = 1001, n32 = 150001, o1 = 333, n16 = 100003, o2 = 17, nbf = 300007, tail = 5;
    m->size = hdr + 4 * n32 + o1 + 2 * n16 + o2 + 2 * nbf + tail;
    m->data = malloc(m->size);
    m->n_reg = 0;
    for (size_t i = 0; i < m->size; i++) m->data[i] = (unsigned char)("{\"tensor\": [1, 2], }"[i % 20] ^ (rnd() & 1));
    size_t pos = hdr;
    put_region(m, &pos, 4, n32, 0); /* F32 at an odd offset */
    pos += o1;
    put_region(m, &pos, 2, n16, 0); /* F16 */
    pos += o2;
    put_region(m, &pos, 2, nbf, 0); /* BF16 */
}

static const char *name_at(uint64_t off, void *ud) {
    model *m = ud;
    static const char *names[] = {"blk.0.f32", "blk.0.f16", "blk.0.bf16"};
    for (size_t i = 0; i < m->n_reg; i++)
        if (off >= m->reg[i].offset && off < m->reg[i].offset + m->reg[i].length) return names[i];
    return NULL;
}

static void check_restores(const char *lbz, const model *m, int threads, const char *what) {
    lb_error err;
    char out[256];

    snprintf(out, sizeof out, "%s/restored.bin", g_dir);
    unlink(out);
    lb_status s = lb_lbz_decompress(lbz, out, threads, NULL, NULL, &err);
    CHECK(s == LB_OK, "%s: %s", what, err.msg);
    size_t n = 0;
    unsigned char *back = read_all(out, &n);
    CHECK(back && n == m->size && memcmp(back, m->data, n) == 0, "%s: restored file equals the original", what);
    free(back);
    void *buf = NULL;
    size_t sz = 0;
    s = lb_lbz_decompress_to_memory(lbz, threads, &buf, &sz, &err);
    CHECK(s == LB_OK && sz == m->size && ((uintptr_t)buf & 4095) == 0 && memcmp(buf, m->data, sz) == 0,
          "%s: restored in memory, aligned", what);
    free(buf);
}

static uint64_t g_prog_done, g_prog_total, g_prog_calls, g_prog_backwards;
static void progress(void *ud, const char *what, uint64_t done, uint64_t total) {
    (void)what;
    (void)ud;
    if (done < g_prog_done) g_prog_backwards++;
    g_prog_done = done, g_prog_total = total, g_prog_calls++;
}

static void test_lbz_roundtrip(model *m) {
    char in[256];

    snprintf(in, sizeof in, "%s/model.bin", g_dir);

    char z[256];

    snprintf(z, sizeof z, "%s/model.lbz", g_dir);
    CHECK(write_file(in, m->data, m->size), "-");
    lb_codec codecs[] = {LB_CODEC_ZSTD, LB_CODEC_LZ4};
    for (int c = 0; c < 2; c++)
        for (int t = 1; t <= 3; t++) {
            lb_lbz_options o = lb_lbz_default_options();
            o.codec = codecs[c];
            o.level = c == 0 ? 3 : 1; /* zstd -3 here to cover a non-default level */
            o.n_threads = t;
            o.chunk_size = 64 * 1024 + 4 * t; /* many chunks, boundaries moving with t */
            g_prog_done = g_prog_calls = g_prog_backwards = 0;
            lb_error err;
            lb_status s = lb_lbz_compress(in, z, m->reg, m->n_reg, &o, progress, NULL, &err);
            CHECK(s == LB_OK, "compress %s t=%d: %s", lb_codec_name(codecs[c]), t, err.msg);
            CHECK(g_prog_done == m->size && g_prog_total == m->size && g_prog_calls > 10 && !g_prog_backwards,
                  "progress reaches the total monotonically");
            char what[64];
            snprintf(what, sizeof what, "%s t=%d", lb_codec_name(codecs[c]), t);
            check_restores(z, m, t, what);
            size_t zn = 0;
            free(read_all(z, &zn));
            printf("lbz %-4s %d thread(s): %zu -> %zu bytes (ratio %.3f)\n", lb_codec_name(codecs[c]), t, m->size, zn,
                   (double)m->size / (double)zn);
        }
    /* the container layout: header kept verbatim, chunks typed by region */
    lb_lbz *h;
    lb_error err;
    CHECK(lb_lbz_open(z, name_at, m, &h, &err) == LB_OK, "%s", err.msg);
    size_t hl = 0;
    const void *hdr = lb_lbz_header(h, &hl);
    CHECK(hl == m->reg[0].offset && memcmp(hdr, m->data, hl) == 0, "header kept verbatim (%zu bytes)", hl);
    CHECK(lb_lbz_original_size(h) == m->size, "-");
    int typed_ok = 1;
    for (size_t i = 0; i < lb_lbz_n_chunks(h); i++) {
        lb_lbz_chunk_info ci;
        lb_lbz_chunk(h, i, &ci);
        uint32_t want = 1;
        for (size_t r = 0; r < m->n_reg; r++)
            if (ci.offset >= m->reg[r].offset && ci.offset < m->reg[r].offset + m->reg[r].length) {
                want = m->reg[r].elem_size;
                typed_ok &= ci.offset + ci.size <= m->reg[r].offset + m->reg[r].length &&
                            (ci.offset - m->reg[r].offset) % want == 0;
            }
        typed_ok &= ci.elem_size == want;
    }
    CHECK(typed_ok, "every chunk lies in one region and has its element size");
    /* random access */
    int ok = 1;
    unsigned char *buf = malloc(m->size);
    for (int k = 0; k < 300; k++) {
        uint64_t off = rnd() % m->size, len = rnd() % (k < 100 ? 64 : k < 200 ? 70000 : 300000);
        if (len > m->size - off) len = m->size - off;
        lb_status s = lb_lbz_read(h, off, (size_t)len, buf, &err);
        ok &= s == LB_OK && memcmp(buf, m->data + off, (size_t)len) == 0;
    }
    CHECK(ok, "300 random reads equal the original bytes");
    CHECK(lb_lbz_read(h, 0, m->size, buf, &err) == LB_OK && memcmp(buf, m->data, m->size) == 0, "whole-file read");
    CHECK(lb_lbz_read(h, m->size - 1, 2, buf, &err) == LB_ERR_RANGE, "read past the end");
    CHECK(lb_lbz_read(h, m->size, 0, buf, &err) == LB_OK, "empty read at the end");
    free(buf);
    lb_lbz_close(h);
}

static void test_lbz_misc(model *m) {
    char in[256];

    snprintf(in, sizeof in, "%s/model.bin", g_dir);

    char z[256];

    snprintf(z, sizeof z, "%s/misc.lbz", g_dir);
    lb_error err;
    lb_lbz_options o = lb_lbz_default_options();
    /* bad descriptions are refused before anything is written */
    lb_lbz_region overlap[2] = {{100, 400, 4}, {200, 100, 2}}, past[1] = {{100, 1u << 30, 4}}, odd[1] = {{100, 6, 4}},
                  esz[1] = {{0, 8, 8}};
    unlink(z);
    CHECK(lb_lbz_compress(in, z, overlap, 2, &o, NULL, NULL, &err) == LB_ERR_ARG, "overlapping regions");
    CHECK(lb_lbz_compress(in, z, past, 1, &o, NULL, NULL, &err) == LB_ERR_ARG, "region past the end");
    CHECK(lb_lbz_compress(in, z, odd, 1, &o, NULL, NULL, &err) == LB_ERR_ARG, "length not a multiple");
    CHECK(lb_lbz_compress(in, z, esz, 1, &o, NULL, NULL, &err) == LB_ERR_ARG, "elem size 8");
    o.chunk_size = 1000;
    CHECK(lb_lbz_compress(in, z, m->reg, m->n_reg, &o, NULL, NULL, &err) == LB_ERR_ARG, "chunk size too small");
    o = lb_lbz_default_options();
    o.level = 99;
    CHECK(lb_lbz_compress(in, z, m->reg, m->n_reg, &o, NULL, NULL, &err) == LB_ERR_ARG, "zstd level 99");
    CHECK(lb_lbz_compress(path_in("nope.bin"), z, m->reg, m->n_reg, NULL, NULL, NULL, &err) == LB_ERR_IO, "missing input");
    CHECK(!exists(z) && temp_files() == 0, "nothing written on bad arguments");
    /* no regions: everything opaque, no header */
    CHECK(lb_lbz_compress(in, z, NULL, 0, NULL, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    check_restores(z, m, 2, "all opaque");
    /* explicit header length inside the F32 region, on an element boundary */
    o = lb_lbz_default_options();
    o.header_len = m->reg[0].offset + 4000;
    CHECK(lb_lbz_compress(in, z, m->reg, m->n_reg, &o, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    check_restores(z, m, 1, "explicit header");
    o.header_len = m->reg[0].offset + 4001;
    CHECK(lb_lbz_compress(in, z, m->reg, m->n_reg, &o, NULL, NULL, &err) == LB_ERR_ARG, "header cutting an element");
    /* an empty file */
    model e = {0};
    e.data = malloc(1);
    CHECK(write_file(path_in("empty.bin"), "", 0), "-");
    CHECK(lb_lbz_compress(path_in("empty.bin"), z, NULL, 0, NULL, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    check_restores(z, &e, 1, "empty file");
    free(e.data);
}

/* Recomputes the index and footer checksums after an edit, as a forger would. */
static void rehash(unsigned char *d, size_t n) {
    unsigned char *ft = d + n - LB_LBZ_FOOTER_SIZE;
    uint64_t ioff = 0, cnt = 0, h;
    for (int i = 7; i >= 0; i--) ioff = ioff << 8 | ft[i], cnt = cnt << 8 | ft[8 + i];
    if (ioff <= n && cnt <= (n - ioff) / LB_LBZ_ENTRY_SIZE) {
        h = XXH64(d + ioff, cnt * LB_LBZ_ENTRY_SIZE, 0);
        for (int i = 0; i < 8; i++) ft[16 + i] = (unsigned char)(h >> (8 * i));
    }
    h = XXH64(ft, 32, 0);
    for (int i = 0; i < 8; i++) ft[32 + i] = (unsigned char)(h >> (8 * i));
}

static int g_bad_ok, g_bad_total;
/* Writes the damaged container; every reader entry point must fail, leaving nothing behind. */
static lb_status expect_bad(const unsigned char *d, size_t n, const char *what, lb_error *err_out) {
    char z[256];

    snprintf(z, sizeof z, "%s/bad.lbz", g_dir);

    char out[256];

    snprintf(out, sizeof out, "%s/bad.out", g_dir);
    write_file(z, d, n);
    unlink(out);
    lb_error err;
    err.msg[0] = 0;
    lb_status s = lb_lbz_decompress(z, out, 2, NULL, NULL, &err);
    void *buf = (void *)1;
    size_t sz = 1;
    lb_error err2;
    lb_status s2 = lb_lbz_decompress_to_memory(z, 2, &buf, &sz, &err2);
    int ok = (s == LB_ERR_CORRUPT || s == LB_ERR_FORMAT) && s2 == s && !buf && !sz && !exists(out) && temp_files() == 0;
    g_bad_total++;
    g_bad_ok += ok;
    if (!ok) fprintf(stderr, "  %s: status %s / %s (%s)\n", what, lb_status_name(s), lb_status_name(s2), err.msg);
    if (err_out) *err_out = err;
    return s;
}

static void test_lbz_damage(model *m) {
    char in[256];

    snprintf(in, sizeof in, "%s/model.bin", g_dir);

    char z[256];

    snprintf(z, sizeof z, "%s/model.lbz", g_dir);
    lb_lbz_options o = lb_lbz_default_options();
    o.chunk_size = 64 * 1024;
    o.n_threads = 2;
    lb_error err;
    CHECK(lb_lbz_compress(in, z, m->reg, m->n_reg, &o, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    size_t n = 0;
    unsigned char *good = read_all(z, &n), *d = malloc(n);
    lb_lbz *h;
    CHECK(lb_lbz_open(z, name_at, m, &h, &err) == LB_OK, "-");
    /* a flipped byte in chunk payloads: plane records, the middle, the last byte */
    size_t nc = lb_lbz_n_chunks(h);
    int named = 1;
    for (size_t k = 0; k < nc; k += 5) {
        lb_lbz_chunk_info ci;
        lb_lbz_chunk(h, k, &ci);
        size_t at[3] = {ci.payload_offset + 1, ci.payload_offset + ci.payload_size / 2, ci.payload_offset + ci.payload_size - 1};
        for (int j = 0; j < 3; j++) {
            memcpy(d, good, n);
            d[at[j]] ^= 0x10;
            char what[64];
            snprintf(what, sizeof what, "chunk %zu byte %zu", k, at[j]);
            lb_error e;
            lb_status s = expect_bad(d, n, what, &e);
            char want[96];
            snprintf(want, sizeof want, "chunk %zu (original offset %llu", k, (unsigned long long)ci.offset);
            named &= s == LB_ERR_CORRUPT && strstr(e.msg, want) != NULL;
            if (j == 1 && k == 5) printf("corrupt chunk message: %s\n", e.msg);
        }
    }
    CHECK(named, "a corrupt chunk is reported as LB_ERR_CORRUPT with its index and original offset");
    /* the tensor name from the callback, through lb_lbz_read */
    {
        lb_lbz_chunk_info ci;
        lb_lbz_chunk(h, 3, &ci);
        memcpy(d, good, n);
        d[ci.payload_offset + ci.payload_size / 2] ^= 1;
        write_file(path_in("bad.lbz"), d, n);
        lb_lbz *hb;
        CHECK(lb_lbz_open(path_in("bad.lbz"), name_at, m, &hb, &err) == LB_OK, "index still fine");
        unsigned char tmp[16];
        lb_status s = lb_lbz_read(hb, ci.offset + 5, 16, tmp, &err);
        const char *nm = name_at(ci.offset, m);
        CHECK(s == LB_ERR_CORRUPT && nm && strstr(err.msg, nm), "read of a corrupt chunk names '%s': %s", nm ? nm : "", err.msg);
        unsigned char *ok = malloc(1000);
        lb_lbz_chunk_info c0;
        lb_lbz_chunk(hb, 0, &c0);
        CHECK(lb_lbz_read(hb, c0.offset, 1000, ok, &err) == LB_OK && memcmp(ok, m->data + c0.offset, 1000) == 0,
              "intact chunks of a damaged file still read");
        free(ok);
        lb_lbz_close(hb);
    }
    lb_lbz_close(h);
    g_bad_ok = g_bad_total = 0;
    /* truncation at many points */
    size_t cuts[] = {0, 1, 8, 63, 64, 65, 500, 1065, 2000, n / 3, n / 2, n - 48 * 3, n - 49, n - 48, n - 47, n - 8, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) expect_bad(good, cuts[i], "truncated", NULL);
    for (int i = 0; i < 40; i++) expect_bad(good, rnd() % n, "truncated", NULL);
    /* every byte of the preamble and the footer, bytes of the verbatim header and the index */
    for (size_t i = 0; i < LB_LBZ_PREAMBLE_SIZE; i++) {
        memcpy(d, good, n);
        d[i] ^= 0x01;
        expect_bad(d, n, "preamble", NULL);
    }
    for (size_t i = n - LB_LBZ_FOOTER_SIZE; i < n; i++) {
        memcpy(d, good, n);
        d[i] ^= 0x80;
        expect_bad(d, n, "footer", NULL);
    }
    for (int i = 0; i < 20; i++) {
        memcpy(d, good, n);
        d[LB_LBZ_PREAMBLE_SIZE + rnd() % m->reg[0].offset] ^= 0x04;
        expect_bad(d, n, "header bytes", NULL);
    }
    lb_lbz_chunk_info last;
    CHECK(lb_lbz_open(z, NULL, NULL, &h, &err) == LB_OK, "-");
    lb_lbz_chunk(h, lb_lbz_n_chunks(h) - 1, &last);
    size_t ioff = last.payload_offset + last.payload_size, nent = lb_lbz_n_chunks(h);
    lb_lbz_close(h);
    for (int i = 0; i < 30; i++) {
        memcpy(d, good, n);
        d[ioff + rnd() % (nent * LB_LBZ_ENTRY_SIZE)] ^= 0x20;
        expect_bad(d, n, "index", NULL);
    }
    /* forged entries whose checksums were recomputed: the structure checks must catch them */
    int fields[] = {0, 8, 16, 20, 32, 33, 34, 39};
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++)
        for (size_t e = 0; e < nent; e += nent / 3) {
            memcpy(d, good, n);
            unsigned char *p = d + ioff + e * LB_LBZ_ENTRY_SIZE + fields[f];
            p[0] ^= (unsigned char)(fields[f] == 32 ? 0x06 : 0x01);
            rehash(d, n);
            lb_error fe;
            expect_bad(d, n, "forged entry", &fe);
        }
    {
        memcpy(d, good, n);
        unsigned char *ft = d + n - LB_LBZ_FOOTER_SIZE;
        ft[8] += 1; /* one more chunk than there is room for */
        rehash(d, n);
        expect_bad(d, n, "forged count", NULL);
        memcpy(d, good, n);
        ft[8] = 0xff, ft[15] = 0x7f; /* an absurd count must not drive an allocation */
        rehash(d, n);
        expect_bad(d, n, "absurd count", NULL);
    }
    CHECK(g_bad_ok == g_bad_total, "%d of %d damaged files rejected with FORMAT/CORRUPT and no output", g_bad_ok, g_bad_total);
    printf("damaged containers rejected: %d/%d\n", g_bad_ok, g_bad_total);
    free(d);
    free(good);
}

static void test_ratio_bf16(void) {
    size_t n = 2u << 20; /* 4 MiB of BF16 */
    uint16_t *w = malloc(2 * n);
    for (size_t i = 0; i < n; i++) w[i] = lb_f32_to_bf16(gauss(0.02f));
    char in[256];

    snprintf(in, sizeof in, "%s/bf16.bin", g_dir);

    char z[256];

    snprintf(z, sizeof z, "%s/bf16.lbz", g_dir);
    write_file(in, w, 2 * n);
    lb_lbz_region r = {0, 2 * n, 2};
    lb_codec codecs[] = {LB_CODEC_ZSTD, LB_CODEC_LZ4};
    for (int c = 0; c < 2; c++) {
        lb_lbz_options o = lb_lbz_default_options();
        o.codec = codecs[c];
        o.level = 1;
        lb_error err;
        CHECK(lb_lbz_compress(in, z, &r, 1, &o, NULL, NULL, &err) == LB_OK, "%s", err.msg);
        size_t zn = 0;
        free(read_all(z, &zn));
        printf("synthetic BF16 Gaussian (std 0.02), %s: ratio %.3f\n", lb_codec_name(codecs[c]), (double)(2 * n) / (double)zn);
    }
    free(w);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lb_test_compress.XXXXXX");
    if (!mkdtemp(g_dir)) return 2;
    test_byteplane();
    test_codec();
    model m;
    make_model(&m);
    test_lbz_roundtrip(&m);
    test_lbz_misc(&m);
    test_lbz_damage(&m);
    test_ratio_bf16();
    free(m.data);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return test_summary();
}
