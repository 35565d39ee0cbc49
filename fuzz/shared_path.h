/* The path of a file of the shared data for a fuzz target: $LB_SHARED_DIR/REL, or by default
 * ../shared beside the source tree (found from this header's own path, so a target runs from
 * any folder). */
#ifndef LB_FUZZ_SHARED_PATH_H
#define LB_FUZZ_SHARED_PATH_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fuzz_shared_path(char *path, size_t cap, const char *rel) {
    const char *shared = getenv("LB_SHARED_DIR");
    if (shared) {
        snprintf(path, cap, "%s/%s", shared, rel);
        return;
    }
    snprintf(path, cap, "%s", __FILE__); /* .../fuzz/shared_path.h */
    char *s = strrchr(path, '/');
    if (s) *s = 0;
    s = strrchr(path, '/');
    if (s) *s = 0;
    size_t n = strlen(path);
    snprintf(path + n, cap - n, "/../shared/%s", rel);
}

#endif
