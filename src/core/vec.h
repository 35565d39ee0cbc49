/* A growable array of token ids. */
#ifndef LB_CORE_VEC_H
#define LB_CORE_VEC_H
#include <stdint.h>
#include <stdlib.h>

typedef struct lb_ids {
    int32_t *v;
    size_t n, cap;
} lb_ids;

/* Returns 0 on allocation failure. */
static inline int lb_ids_push(lb_ids *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return 0;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 1;
}
static inline void lb_ids_free(lb_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}
#endif
