/* libFuzzer over delta files: lb_delta_open (safetensors structure, metadata JSON, every
 * entry's sizes and data checksum), then patching each small entry over a zero base in two
 * ranges, so a size the open let through shows up as an out-of-bounds access under ASan; then
 * the version 2 encodings ('z' chunks, 'r' rows) once more whole, split across two threads. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "delta/deltafile.h"

static void patch_entry(const lb_delta *d, const lb_delta_entry *e) {
    if ((!e->val && !e->z) || e->n == 0 || e->n > ((uint64_t)1 << 20) || e->es == 0 || e->es > 4) return;
    uint8_t *buf = calloc((size_t)e->n, e->es);
    lb_delta_cursor c;
    lb_error err;
    if (buf && lb_delta_cursor_init(d, e, &c, &err) == LB_OK) {
        uint64_t half = e->n / 2;
        if (lb_delta_patch(d, e, &c, buf, 0, half, &err) == LB_OK &&
            lb_delta_patch(d, e, &c, buf + half * e->es, half, e->n - half, &err) == LB_OK)
            lb_delta_patch_end(d, e, &c, &err);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_log_set_level(LB_LOG_ERROR);
    int fd = memfd_create("fuzz.delta", MFD_CLOEXEC);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lb_delta *d;
    lb_error err;
    if (lb_delta_open(path, &d, &err) == LB_OK) {
        for (size_t i = 0; i < d->n; i++) patch_entry(d, &d->e[i]);
        if (lb_delta_use_threads(d, 2, &err) == LB_OK)
            for (size_t i = 0; i < d->n; i++)
                if (d->e[i].enc) patch_entry(d, &d->e[i]);
        lb_delta_close(d);
    }
    close(fd);
    return 0;
}
