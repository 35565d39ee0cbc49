/* Delta files through the library: random F32/F16/BF16 pairs written as safetensors; lossless
 * round trip bit for bit, thresholded error within the threshold (plus rounding), int8 error
 * within half a step, and the patcher's index range check on a hand-built entry. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/dtype.h"
#include "delta/deltafile.h"
#include "io/safetensors.h"

static uint64_t g_rng = 88172645463325252ull;
static double rnd(void) {
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

enum { N0 = 3000, N1 = 1000, N2 = 777 };

static void make_pair(float *f32b, float *f32f, uint16_t *h16b, uint16_t *h16f, uint16_t *bfb, uint16_t *bff) {
    for (int i = 0; i < N0; i++) {
        f32b[i] = (float)(rnd() - 0.5) * 0.1f;
        f32f[i] = rnd() < 0.1 ? f32b[i] + (float)(rnd() - 0.5) * 0.01f : f32b[i]; /* sparse change */
    }
    for (int i = 0; i < N1; i++) {
        h16b[i] = lb_f32_to_fp16((float)(rnd() - 0.5));
        h16f[i] = lb_f32_to_fp16(lb_fp16_to_f32(h16b[i]) + (float)(rnd() - 0.5) * 0.02f); /* dense change */
    }
    for (int i = 0; i < N2; i++) {
        bfb[i] = lb_f32_to_bf16((float)(rnd() - 0.5));
        bff[i] = i % 5 ? bfb[i] : (uint16_t)(bfb[i] ^ 0x8000); /* sign flips, incl. of zero */
    }
    bfb[0] = 0, bff[0] = 0x8000;
}

static void write_st(const char *path, const float *a, const uint16_t *b, const uint16_t *c) {
    lb_safetensors_writer *w;
    lb_error err;
    int64_t s0[2] = {30, 100}, s1[1] = {N1}, s2[1] = {N2};
    lb_safetensors_writer_new(&w, &err);
    lb_safetensors_writer_add(w, "a.weight", LB_ST_F32, 2, s0, a, &err);
    lb_safetensors_writer_add(w, "b.weight", LB_ST_F16, 1, s1, b, &err);
    lb_safetensors_writer_add(w, "c.weight", LB_ST_BF16, 1, s2, c, &err);
    CHECK(lb_safetensors_writer_write(w, path, &err) == LB_OK, "%s", err.msg);
    lb_safetensors_writer_free(w);
}

static int read_back(const char *path, float *a, uint16_t *b, uint16_t *c) {
    lb_safetensors *st;
    lb_error err;
    if (lb_safetensors_open(path, &st, &err)) return 0;
    memcpy(a, lb_safetensors_info(st, 0)->data, N0 * 4);
    memcpy(b, lb_safetensors_info(st, 1)->data, N1 * 2);
    memcpy(c, lb_safetensors_info(st, 2)->data, N2 * 2);
    lb_safetensors_close(st);
    return 1;
}

int main(void) {
    static float ab[N0], af[N0], ao[N0];
    static uint16_t bb[N1], bf[N1], bo[N1], cb[N2], cf[N2], co[N2];
    make_pair(ab, af, bb, bf, cb, cf);
    char dir[] = "/tmp/test_deltafile_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char pb[64], pf[64], pd[64], po[64];
    snprintf(pb, sizeof pb, "%s/base.st", dir), snprintf(pf, sizeof pf, "%s/ft.st", dir);
    snprintf(pd, sizeof pd, "%s/d.delta", dir), snprintf(po, sizeof po, "%s/out.st", dir);
    write_st(pb, ab, bb, cb);
    write_st(pf, af, bf, cf);
    lb_error err;
    lb_delta_summary sum;

    /* lossless */
    CHECK(lb_delta_create(pb, pf, pd, NULL, &sum, &err) == LB_OK, "%s", err.msg);
    size_t changed = 0;
    for (int i = 0; i < N0; i++) changed += memcmp(&ab[i], &af[i], 4) != 0;
    for (int i = 0; i < N1; i++) changed += bb[i] != bf[i];
    for (int i = 0; i < N2; i++) changed += cb[i] != cf[i];
    CHECK(sum.n_kept == changed, "kept %llu, changed %zu", (unsigned long long)sum.n_kept, changed);
    /* the public view of the file agrees with what create wrote and with the inputs' shapes */
    lb_delta *dv = NULL;
    CHECK(lb_delta_open(pd, &dv, &err) == LB_OK, "%s", err.msg);
    if (dv) {
        lb_delta_info in;
        lb_delta_get_info(dv, &in);
        CHECK(in.n_tensors == 3 && in.n_changed == sum.n_changed && in.lossless && in.max_err == 0,
              "info: %zu tensors, %zu changed (create: %llu), lossless %d", in.n_tensors, in.n_changed,
              (unsigned long long)sum.n_changed, in.lossless);
        CHECK(in.weight_bytes == 4 * N0 + 2 * N1 + 2 * N2, "weight bytes %llu", (unsigned long long)in.weight_bytes);
        uint64_t data = 0;
        const char *names[] = {"a.weight", "b.weight", "c.weight"};
        lb_delta_tensor_info t;
        for (size_t i = 0; i < 3; i++) {
            CHECK(lb_delta_get_tensor(dv, i, &t, &err) == LB_OK, "%s", err.msg);
            CHECK(!strcmp(t.name, names[i]) && strcmp(t.encoding, "same") != 0, "tensor %zu: %s %s", i, t.name, t.encoding);
            data += t.data_bytes;
        }
        CHECK(data == in.data_bytes, "per-tensor bytes %llu, total %llu", (unsigned long long)data,
              (unsigned long long)in.data_bytes);
        lb_status s = lb_delta_get_tensor(dv, 3, &t, &err);
        CHECK(s == LB_ERR_RANGE && strstr(err.msg, "d.delta") && strstr(err.msg, "tensor 3"), "index 3: %d %s", s, err.msg);
        lb_delta_close(dv);
    }
    CHECK(lb_delta_apply(pb, pd, po, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(read_back(po, ao, bo, co), "read back");
    CHECK(!memcmp(ao, af, sizeof af) && !memcmp(bo, bf, sizeof bf) && !memcmp(co, cf, sizeof cf), "lossless round trip");
    /* the wrong base */
    unlink(po);
    CHECK(lb_delta_apply(pf, pd, po, NULL, NULL, &err) == LB_ERR_MISMATCH, "wrong base: %s", err.msg);
    CHECK(access(po, F_OK) != 0, "no output after a refused apply");

    /* thresholded float: every element within T of the fine-tune, plus one rounding step */
    lb_delta_options o = lb_delta_default_options();
    o.threshold = 0.003f;
    CHECK(lb_delta_create(pb, pf, pd, &o, &sum, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_delta_apply(pb, pd, po, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(read_back(po, ao, bo, co), "read back");
    double worst = 0;
    for (int i = 0; i < N0; i++) worst = fmax(worst, fabs(ao[i] - af[i]));
    for (int i = 0; i < N1; i++)
        worst = fmax(worst, fabs(lb_fp16_to_f32(bo[i]) - lb_fp16_to_f32(bf[i])) - fabs(lb_fp16_to_f32(bf[i])) / 1024);
    CHECK(worst <= 0.003 + 1e-6, "float mode error %g", worst);
    CHECK(fabs(sum.max_abs_err - worst) < 0.003 && sum.max_abs_err <= 0.003 + 1e-3, "reported error %g", sum.max_abs_err);

    /* int8 */
    o.threshold = 0, o.int8 = 1;
    CHECK(lb_delta_create(pb, pf, pd, &o, &sum, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_delta_apply(pb, pd, po, NULL, NULL, &err) == LB_OK, "%s", err.msg);
    CHECK(read_back(po, ao, bo, co), "read back");
    worst = 0;
    for (int i = 0; i < N0; i++) worst = fmax(worst, fabs(ao[i] - af[i]));
    CHECK(worst <= 0.005 / 127 + 1e-6, "int8 F32 error %g (max delta 0.005, half step)", worst);

    /* the patcher refuses an index past the tensor */
    uint32_t gaps[2] = {5, 10}; /* indices 5 and 16 of a 12-element tensor */
    uint32_t vals[2] = {1, 1};
    lb_delta_entry e;
    memset(&e, 0, sizeof e);
    e.name = "t";
    e.type = LB_F32, e.es = 4, e.n = 12, e.kept = 2;
    e.idx = (const uint8_t *)gaps, e.val = (const uint8_t *)vals;
    lb_delta d;
    memset(&d, 0, sizeof d);
    d.path = "hand-built", d.mode = LB_DELTA_XOR, d.block = 64;
    lb_delta_cursor c;
    float buf[12] = {0};
    lb_status s = lb_delta_cursor_init(&d, &e, &c, &err);
    if (!s) s = lb_delta_patch(&d, &e, &c, (uint8_t *)buf, 0, 12, &err);
    CHECK(s == LB_ERR_RANGE && strstr(err.msg, "out of range"), "range: %d %s", s, err.msg);
    uint32_t bits;
    memcpy(&bits, &buf[5], 4);
    CHECK(bits == 1, "the in-range entry was applied");

    unlink(pb), unlink(pf), unlink(pd), unlink(po), rmdir(dir);
    return test_summary();
}
