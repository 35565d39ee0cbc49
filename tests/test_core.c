/* Core: half/bfloat conversions against exhaustive round trips, tensor size checks, atomic files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "core/tensor.h"

int main(void) {
    /* every finite half converts to float and back unchanged */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lb_fp16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (lb_f32_to_fp16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    CHECK(lb_fp16_to_f32(0x3c00) == 1.0f);
    CHECK(lb_fp16_to_f32(0xc000) == -2.0f);
    CHECK(lb_fp16_to_f32(0x0001) == ldexpf(1, -24));
    CHECK(lb_f32_to_fp16(1.0f + ldexpf(1, -11)) == 0x3c00, "ties round to even");
    CHECK(lb_f32_to_fp16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02);
    CHECK(lb_f32_to_fp16(70000.0f) == 0x7c00, "overflow to inf");
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lb_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        if (lb_f32_to_bf16(f) != h) bad++;
    }
    CHECK(bad == 0, "%d bfloats do not round-trip", bad);
    CHECK(lb_f32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3f80, "ties to even");

    size_t nb;
    lb_error err;
    int64_t ne[2] = {64, 3};
    CHECK(lb_tensor_nbytes(LB_Q8_0, 2, ne, &nb, "t", &err) == LB_OK && nb == 2 * 34 * 3);
    int64_t odd[2] = {33, 1};
    CHECK(lb_tensor_nbytes(LB_Q8_0, 2, odd, &nb, "t", &err) == LB_ERR_FORMAT);
    int64_t huge[3] = {1LL << 40, 1LL << 40, 1LL << 40};
    CHECK(lb_tensor_nbytes(LB_F32, 3, huge, &nb, "t", &err) == LB_ERR_FORMAT);
    CHECK(lb_tensor_nbytes(99, 1, ne, &nb, "t", &err) == LB_ERR_FORMAT && strstr(err.msg, "99"));
    CHECK(lb_dtype_from_name("q4_k") == LB_Q4_K && lb_dtype_from_name("bf16") == LB_BF16);

    /* atomic write: nothing under the final name until commit, nothing left after abort */
    char path[] = "/tmp/lb_test_atomic_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    lb_atomic_file *f;
    CHECK(lb_atomic_open(path, &f, &err) == LB_OK);
    lb_atomic_write(f, "abc", 3, &err);
    CHECK(access(path, F_OK) != 0);
    lb_atomic_abort(f);
    CHECK(access(path, F_OK) != 0);
    CHECK(lb_atomic_open(path, &f, &err) == LB_OK);
    lb_atomic_write(f, "hello", 5, &err);
    CHECK(lb_atomic_commit(f, &err) == LB_OK);
    lb_mapfile mf;
    CHECK(lb_mapfile_open(path, &mf, &err) == LB_OK && mf.size == 5 && memcmp(mf.data, "hello", 5) == 0);
    lb_mapfile_close(&mf);
    unlink(path);
    CHECK(lb_mapfile_open("/nonexistent/x", &mf, &err) == LB_ERR_IO && strstr(err.msg, "/nonexistent/x"));
    return test_summary();
}
