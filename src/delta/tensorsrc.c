#include "delta/tensorsrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mapfile.h"

static void set_elem(lb_tsrc_tensor *t, int type) {
    t->type = -1, t->es = 0, t->n = t->nbytes;
    if (type == LB_F32 || type == LB_F16 || type == LB_BF16) {
        t->type = type;
        t->es = type == LB_F32 ? 4 : 2;
        t->n = t->nbytes / t->es;
    }
}

static lb_status fill_gguf(lb_tsrc *s, lb_error *err) {
    s->kind = 'g';
    s->n = lb_gguf_tensor_count(s->g);
    if (!(s->t = calloc(s->n ? s->n : 1, sizeof *s->t))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        const lb_tensor *g = lb_gguf_tensor(s->g, i);
        lb_tsrc_tensor *t = &s->t[i];
        t->name = g->name;
        snprintf(t->dtype, sizeof t->dtype, "%s", lb_dtype_name(g->type));
        t->n_dims = g->n_dims;
        for (int d = 0; d < g->n_dims && d < 4; d++) t->shape[g->n_dims - 1 - d] = g->ne[d], t->ne[d] = g->ne[d];
        t->data = g->data;
        t->nbytes = g->nbytes;
        set_elem(t, (int)g->type);
    }
    return LB_OK;
}

static lb_status fill_st(lb_tsrc *s, lb_error *err) {
    s->kind = 's';
    s->n = lb_safetensors_count(s->st);
    if (!(s->t = calloc(s->n ? s->n : 1, sizeof *s->t))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        const lb_st_tensor *x = lb_safetensors_info(s->st, i);
        lb_tsrc_tensor *t = &s->t[i];
        t->name = x->name;
        snprintf(t->dtype, sizeof t->dtype, "%s", lb_st_dtype_name(x->dtype));
        t->n_dims = x->n_dims;
        for (int d = 0; d < x->n_dims && d < 8; d++) t->shape[d] = x->shape[d];
        t->data = x->data;
        t->nbytes = x->nbytes;
        set_elem(t, lb_st_dtype_to_lb(x->dtype));
    }
    return LB_OK;
}

lb_status lb_tsrc_parse(const void *data, size_t size, const char *name, lb_tsrc **out, lb_error *err) {
    *out = NULL;
    lb_tsrc *s = calloc(1, sizeof *s);
    if (!s || !(s->file = strdup(name))) {
        free(s);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    }
    lb_status st;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        if (!(st = lb_gguf_parse(data, size, name, &s->g, err))) st = fill_gguf(s, err);
    } else if (!(st = lb_safetensors_parse(data, size, name, &s->st, err))) {
        st = fill_st(s, err);
    }
    if (st) {
        lb_tsrc_close(s);
        return st;
    }
    *out = s;
    return LB_OK;
}

lb_status lb_tsrc_open(const char *path, lb_tsrc **out, lb_error *err) {
    *out = NULL;
    lb_tsrc *s = calloc(1, sizeof *s);
    if (!s) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    struct stat sb;
    lb_status st = LB_OK;
    if (stat(path, &sb) != 0) {
        free(s);
        return lb_fail(err, LB_ERR_IO, "%s: cannot open", path);
    }
    if (S_ISDIR(sb.st_mode)) {
        s->dir = strdup(path);
        s->file = lb_path_join(path, "model.safetensors");
        if (!s->dir || !s->file) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        else if (stat(s->file, &sb) != 0)
            st = lb_fail(err, LB_ERR_UNSUPPORTED, "%s: deltas need a folder with a single model.safetensors", path);
    } else if (!(s->file = strdup(path))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    if (!st) {
        unsigned char head[4] = {0};
        size_t got = 0;
        if ((st = lb_read_head(s->file, head, 4, &got, err))) {
        } else if (got == 4 && memcmp(head, "GGUF", 4) == 0) {
            if (!(st = lb_gguf_open(s->file, &s->g, err))) st = fill_gguf(s, err);
        } else if (!(st = lb_safetensors_open(s->file, &s->st, err))) {
            st = fill_st(s, err);
        }
    }
    if (st) {
        lb_tsrc_close(s);
        return st;
    }
    *out = s;
    return LB_OK;
}

void lb_tsrc_close(lb_tsrc *s) {
    if (!s) return;
    if (s->g) lb_gguf_close(s->g);
    if (s->st) lb_safetensors_close(s->st);
    free(s->t);
    free(s->file);
    free(s->dir);
    free(s);
}

const lb_tsrc_tensor *lb_tsrc_find(const lb_tsrc *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->t[i].name, name) == 0) return &s->t[i];
    return NULL;
}

static uintptr_t page_size(void) {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (uintptr_t)p : 4096;
}

void lb_tsrc_release(const void *p, size_t n) {
    uintptr_t ps = page_size(), a = (uintptr_t)p & ~(ps - 1), e = ((uintptr_t)p + n) & ~(ps - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

void lb_tsrc_advise_sequential(const lb_tsrc *s) {
    const void *data = s->g ? lb_gguf_file_data(s->g) : NULL;
    size_t size = s->g ? lb_gguf_file_size(s->g) : 0;
    if (!data && s->n) { /* safetensors: the span of the tensor data */
        data = s->t[0].data;
        for (size_t i = 0; i < s->n; i++)
            if (s->t[i].data < (const uint8_t *)data) data = s->t[i].data;
        for (size_t i = 0; i < s->n; i++)
            if ((size_t)(s->t[i].data + s->t[i].nbytes - (const uint8_t *)data) > size)
                size = (size_t)(s->t[i].data + s->t[i].nbytes - (const uint8_t *)data);
    }
    uintptr_t ps = page_size(), a = (uintptr_t)data & ~(ps - 1);
    if (data && size) madvise((void *)a, size + ((uintptr_t)data - a), MADV_SEQUENTIAL);
}
