/* libFuzzer over the .lbz container: open (preamble, index, header checksum), the kept-header
 * check a model restore makes first, random reads and a whole restore to memory when the
 * declared size is small; any input must restore exactly or fail cleanly. The bytes go through a
 * memfd because the reader opens a path, as every caller does. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compress/lbz.h"
#include "compress/model_regions.h"

static int as_path(const uint8_t *data, size_t size, char *path, size_t cap) {
    int fd = memfd_create("fuzz.lbz", MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return -1;
    }
    snprintf(path, cap, "/proc/self/fd/%d", fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lb_log_set_level(LB_LOG_ERROR);
    char path[64];
    int fd = as_path(data, size, path, sizeof path);
    if (fd < 0) return 0;
    lb_error err;
    lb_model_regions *names;
    uint64_t orig;
    if (lb_lbz_restore_check(path, &names, &orig, &err) == LB_OK) lb_model_regions_free(names);
    lb_lbz *z;
    if (lb_lbz_open(path, NULL, NULL, &z, &err) == LB_OK) {
        uint64_t n = lb_lbz_original_size(z);
        size_t hl;
        const uint8_t *h = lb_lbz_header(z, &hl);
        volatile uint8_t sink = hl ? h[0] ^ h[hl - 1] : 0;
        if (n <= ((uint64_t)8 << 20)) {
            uint8_t *buf = malloc(n ? (size_t)n : 1);
            if (buf && lb_lbz_read(z, 0, (size_t)n, buf, &err) == LB_OK && n) sink ^= buf[n - 1];
            if (buf && n > 2 && lb_lbz_read(z, n / 3, (size_t)(n / 3), buf, &err) == LB_OK) sink ^= buf[0];
            free(buf);
            void *all;
            size_t len;
            if (lb_lbz_extract_to_memory(z, 1, NULL, NULL, &all, &len, &err) == LB_OK) {
                if (len != n) __builtin_trap();
                free(all);
            }
        }
        (void)sink;
        lb_lbz_close(z);
    }
    close(fd);
    return 0;
}
