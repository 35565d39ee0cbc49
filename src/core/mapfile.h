/* Read-only memory mapping of a whole file. Empty files map to a non-NULL zero-length view. */
#ifndef LB_CORE_MAPFILE_H
#define LB_CORE_MAPFILE_H
#include <stddef.h>
#include "lowbit.h"

typedef struct lb_mapfile {
    const unsigned char *data;
    size_t size;
    char *path; /* owned copy, for error messages */
    void *heap; /* non-NULL: data is this malloc'ed buffer (a restored .lbz), freed at close */
} lb_mapfile;

/* Every input is opened through this: O_NONBLOCK open (a FIFO cannot hang it), fstat, anything
 * but a regular file refused with a message naming the path. *size (optional): its length. */
lb_status lb_open_regular(const char *path, int *fd, size_t *size, lb_error *err);
/* The first up to cap bytes of a regular file (format sniffing); *got may be < cap. */
lb_status lb_read_head(const char *path, void *buf, size_t cap, size_t *got, lb_error *err);
/* The first up to 8 of n bytes in hex ("47 47 55 58 ...") for "not a known format" messages;
 * "none: the file is empty" when n is 0. Returns out. */
const char *lb_head_hex(const void *p, size_t n, char out[40]);

lb_status lb_mapfile_open(const char *path, lb_mapfile *out, lb_error *err);
void lb_mapfile_close(lb_mapfile *m);
/* A view of a heap buffer the mapfile takes ownership of (freed at close, also on failure). */
lb_status lb_mapfile_from_heap(void *buf, size_t size, const char *path, lb_mapfile *out, lb_error *err);

/* lb_read_file and the lb_atomic_* writer are public (lowbit.h). */

/* "dir/name" in a new malloc'd string; NULL when out of memory. */
char *lb_path_join(const char *dir, const char *name);

/* Writes a file atomically: data goes to DIR/.NAME.lowbit-tmp.PID.XXXXXX beside PATH, is fsynced,
 * then renamed over PATH. Opening removes such temps of PATH whose writer (PID) is gone, as a
 * kill -9 leaves them. */
char *lb_temp_name(const char *path); /* malloc'd mkstemp template */
void lb_temp_sweep(const char *path);
int lb_atomic_fd(const lb_atomic_file *f);

#endif
