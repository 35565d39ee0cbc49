#include "core/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

static const unsigned char g_empty[1];

lb_status lb_open_regular(const char *path, int *fd_out, size_t *size, lb_error *err) {
    *fd_out = -1;
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return lb_fail(err, LB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        lb_status s = lb_fail(err, LB_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return s;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lb_fail(err, LB_ERR_IO, "%s: not a regular file (%s)", path,
                       S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO" :
                       S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : S_ISSOCK(st.st_mode) ? "a socket" : "not a file");
    }
    /* reads of a regular file never block; clear the flag so later reads are ordinary */
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    *fd_out = fd;
    if (size) *size = (size_t)st.st_size;
    return LB_OK;
}

/* Reads up to cap bytes (fewer at end of file); -1 on a read error. */
static ssize_t read_full(int fd, void *buf, size_t cap) {
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, (char *)buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) break;
        n += (size_t)r;
    }
    return (ssize_t)n;
}

lb_status lb_read_head(const char *path, void *buf, size_t cap, size_t *got, lb_error *err) {
    int fd;
    lb_status s = lb_open_regular(path, &fd, NULL, err);
    if (s) return s;
    ssize_t n = read_full(fd, buf, cap);
    if (n < 0) s = lb_fail(err, LB_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    close(fd);
    *got = n < 0 ? 0 : (size_t)n;
    return s;
}

const char *lb_head_hex(const void *p, size_t n, char out[40]) {
    const unsigned char *b = p;
    size_t k = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && i < 8; i++) k += (size_t)snprintf(out + k, 40 - k, i ? " %02x" : "%02x", b[i]);
    if (n > 8) snprintf(out + k, 40 - k, " ...");
    if (!n) snprintf(out, 40, "none: the file is empty");
    return out;
}

lb_status lb_mapfile_open(const char *path, lb_mapfile *out, lb_error *err) {
    memset(out, 0, sizeof *out);
    int fd;
    size_t size;
    lb_status s = lb_open_regular(path, &fd, &size, err);
    if (s) return s;
    out->size = size;
    if (out->size == 0) {
        out->data = g_empty;
    } else {
        void *p = mmap(NULL, out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return lb_fail(err, LB_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
        }
        out->data = p;
    }
    close(fd);
    out->path = strdup(path);
    return LB_OK;
}

lb_status lb_mapfile_from_heap(void *buf, size_t size, const char *path, lb_mapfile *out, lb_error *err) {
    memset(out, 0, sizeof *out);
    if (!(out->path = strdup(path))) {
        free(buf);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    out->heap = buf;
    out->data = buf;
    out->size = size;
    return LB_OK;
}

void lb_mapfile_close(lb_mapfile *m) {
    if (!m) return;
    if (m->heap) free(m->heap);
    else if (m->data && m->data != g_empty) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

lb_status lb_read_file(const char *path, size_t max_size, char **out, size_t *len, lb_error *err) {
    int fd;
    size_t n;
    lb_status s = lb_open_regular(path, &fd, &n, err);
    if (s) return s;
    if (n > max_size) {
        close(fd);
        return lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes, more than the %zu allowed for this kind of file", path, n,
                       max_size);
    }
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return lb_fail(err, LB_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    ssize_t got = read_full(fd, buf, n);
    close(fd);
    if (got != (ssize_t)n) {
        free(buf);
        return lb_fail(err, LB_ERR_IO, "%s: read %zd of %zu bytes (changed while read?)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return LB_OK;
}

struct lb_atomic_file {
    int fd;
    char *path, *tmp;
};

lb_status lb_atomic_open(const char *path, lb_atomic_file **out, lb_error *err) {
    lb_status s0 = lb_output_check(path, NULL, 0, 0, err); /* a folder or "x/" named as the output */
    if (s0) return s0;
    lb_atomic_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path)) || !(f->tmp = lb_temp_name(path))) {
        if (f) free(f->path);
        free(f);
        return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", path);
    }
    lb_temp_sweep(path);
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        lb_status s = lb_fail(err, LB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(f->tmp);
        free(f->path);
        free(f);
        return s;
    }
    fchmod(f->fd, 0644);
    *out = f;
    return LB_OK;
}

int lb_atomic_fd(const lb_atomic_file *f) { return f->fd; }

lb_status lb_atomic_write(lb_atomic_file *f, const void *data, size_t n, lb_error *err) {
    const char *p = data;
    while (n) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return lb_fail(err, LB_ERR_IO, "%s: write failed: %s", f->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return LB_OK;
}

static void atomic_free(lb_atomic_file *f) {
    free(f->tmp);
    free(f->path);
    free(f);
}

lb_status lb_atomic_commit(lb_atomic_file *f, lb_error *err) {
    lb_status s = LB_OK;
    if (fsync(f->fd) != 0) s = lb_fail(err, LB_ERR_IO, "%s: fsync failed: %s", f->path, strerror(errno));
    if (close(f->fd) != 0 && s == LB_OK) s = lb_fail(err, LB_ERR_IO, "%s: close failed: %s", f->path, strerror(errno));
    if (s == LB_OK && rename(f->tmp, f->path) != 0)
        s = lb_fail(err, LB_ERR_IO, "%s: rename failed: %s", f->path, strerror(errno));
    if (s != LB_OK) unlink(f->tmp);
    atomic_free(f);
    return s;
}

void lb_atomic_abort(lb_atomic_file *f) {
    if (!f) return;
    close(f->fd);
    unlink(f->tmp);
    atomic_free(f);
}

char *lb_path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}
