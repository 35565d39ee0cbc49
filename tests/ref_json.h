/* Reading ../shared/reference JSON in the C tests: a whole file parsed, and an id array
 * compared with ids. */
#ifndef LB_TESTS_REF_JSON_H
#define LB_TESTS_REF_JSON_H
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

static inline cJSON *load_json(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static inline int ids_equal(cJSON *a, const int32_t *b, size_t n) {
    if ((size_t)cJSON_GetArraySize(a) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (cJSON_GetArrayItem(a, (int)i)->valueint != b[i]) return 0;
    return 1;
}
#endif
