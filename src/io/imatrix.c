/* llama.cpp's imatrix .dat files (layout in io/imatrix.h): read with every field checked against
 * the bytes left, written atomically. */
#include "io/imatrix.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* Longer names than any GGUF tensor name can have (64 bytes in ggml) are not a matrix's. */
enum { MAX_NAME = 1024 };

lb_status lb_imatrix_new(lb_imatrix **out, lb_error *err) {
    lb_imatrix *im = calloc(1, sizeof *im);
    if (im) im->dataset = calloc(1, 1);
    if (!im || !im->dataset) {
        free(im);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for an importance matrix");
    }
    *out = im;
    return LB_OK;
}

void lb_imatrix_free(lb_imatrix *im) {
    if (!im) return;
    for (size_t i = 0; i < im->n; i++) {
        free(im->e[i].name);
        free(im->e[i].values);
    }
    free(im->e);
    free(im->dataset);
    free(im);
}

long lb_imatrix_find(const lb_imatrix *im, const char *name) {
    for (size_t i = 0; im && name && i < im->n; i++)
        if (!strcmp(im->e[i].name, name)) return (long)i;
    return -1;
}

const lb_imatrix_entry *lb_imatrix_get(const lb_imatrix *im, const char *name) {
    long i = lb_imatrix_find(im, name);
    return i < 0 ? NULL : &im->e[i];
}

lb_status lb_imatrix_add(lb_imatrix *im, const char *name, int32_t ncall, int32_t nval, const float *values,
                         lb_error *err) {
    if (lb_imatrix_find(im, name) >= 0)
        return lb_fail(err, LB_ERR_ARG, "importance matrix: entry '%s' given twice", name);
    if (im->n == im->cap) {
        size_t cap = im->cap ? 2 * im->cap : 64;
        lb_imatrix_entry *e = realloc(im->e, cap * sizeof *e);
        if (!e) return lb_fail(err, LB_ERR_NOMEM, "out of memory for importance matrix entries");
        im->e = e, im->cap = cap;
    }
    lb_imatrix_entry *e = &im->e[im->n];
    size_t len = strlen(name);
    e->name = malloc(len + 1);
    e->values = malloc((size_t)nval * sizeof(float));
    if (!e->name || !e->values) {
        free(e->name), free(e->values);
        return lb_fail(err, LB_ERR_NOMEM, "out of memory for importance matrix entry '%s'", name);
    }
    memcpy(e->name, name, len + 1);
    memcpy(e->values, values, (size_t)nval * sizeof(float));
    e->ncall = ncall, e->nval = nval;
    im->n++;
    return LB_OK;
}

/* ---- reading -------------------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t size, off;
    const char *name;
    lb_error *err;
} rd;

static lb_status need(rd *r, size_t n, const char *what, long entry) {
    if (r->size - r->off >= n) return LB_OK;
    if (entry >= 0)
        return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld: %s at offset %zu needs %zu bytes, %zu left (truncated?)",
                       r->name, entry, what, r->off, n, r->size - r->off);
    return lb_fail(r->err, LB_ERR_FORMAT, "%s: %s at offset %zu needs %zu bytes, %zu left (truncated?)", r->name, what,
                   r->off, n, r->size - r->off);
}

static int32_t i32(rd *r) {
    uint32_t v = (uint32_t)r->p[r->off] | (uint32_t)r->p[r->off + 1] << 8 | (uint32_t)r->p[r->off + 2] << 16 |
                 (uint32_t)r->p[r->off + 3] << 24;
    r->off += 4;
    return (int32_t)v;
}

static float f32(rd *r) {
    uint32_t u = (uint32_t)i32(r);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static lb_status read_entry(rd *r, lb_imatrix *im, long k, float **vals, size_t *vcap) {
    lb_status s;
    char name[MAX_NAME + 1];
    if ((s = need(r, 4, "name length", k))) return s;
    size_t at = r->off;
    int32_t len = i32(r);
    if (len < 1 || len > MAX_NAME)
        return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld: name length %d at offset %zu is outside 1..%d", r->name, k,
                       (int)len, at, MAX_NAME);
    if ((s = need(r, (size_t)len, "name", k))) return s;
    memcpy(name, r->p + r->off, (size_t)len);
    name[len] = 0;
    r->off += (size_t)len;
    if (strlen(name) != (size_t)len)
        return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld: name at offset %zu holds a NUL byte", r->name, k, at + 4);
    if ((s = need(r, 8, "ncall and nval", k))) return s;
    at = r->off;
    int32_t ncall = i32(r), nval = i32(r);
    if (ncall < 1)
        return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld (%s): ncall %d at offset %zu is not positive", r->name, k,
                       name, (int)ncall, at);
    if (nval < 1)
        return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld (%s): nval %d at offset %zu is not positive", r->name, k,
                       name, (int)nval, at + 4);
    /* the count is checked against the bytes left before anything is allocated for it */
    if ((s = need(r, (size_t)nval * 4, "values", k))) return s;
    if ((size_t)nval > *vcap) {
        float *v = realloc(*vals, (size_t)nval * sizeof(float));
        if (!v) return lb_fail(r->err, LB_ERR_NOMEM, "%s: out of memory for %d values", r->name, (int)nval);
        *vals = v, *vcap = (size_t)nval;
    }
    for (int32_t j = 0; j < nval; j++) {
        float v = f32(r);
        if (!(v >= 0) || !isfinite(v)) /* a sum of squares: negative, NaN or inf is corrupt */
            return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld (%s): value %d at offset %zu is %g, not a finite sum of squares",
                           r->name, k, name, (int)j, r->off - 4, (double)v);
        (*vals)[j] = v;
    }
    if (lb_imatrix_find(im, name) >= 0)
        return lb_fail(r->err, LB_ERR_FORMAT, "%s: entry %ld: matrix '%s' appears twice", r->name, k, name);
    return lb_imatrix_add(im, name, ncall, nval, *vals, r->err);
}

lb_status lb_imatrix_parse(const void *data, size_t size, const char *name, lb_imatrix **out, lb_error *err) {
    *out = NULL;
    rd r = {data, size, 0, name ? name : "imatrix", err};
    lb_status s = need(&r, 4, "entry count", -1);
    if (s) return s;
    int32_t n = i32(&r);
    /* an entry takes at least 17 bytes (lengths, a 1-byte name, one value) */
    if (n < 1 || (size_t)n > (size - 4) / 17)
        return lb_fail(err, LB_ERR_FORMAT, "%s: entry count %d at offset 0 is impossible for a file of %zu bytes", r.name,
                       (int)n, size);
    lb_imatrix *im = NULL;
    if ((s = lb_imatrix_new(&im, err))) return s;
    float *vals = NULL;
    size_t vcap = 0;
    for (int32_t k = 0; k < n && !s; k++) s = read_entry(&r, im, k, &vals, &vcap);
    free(vals);
    /* the trailer: llama.cpp files since 2024 carry it, older ones end after the entries */
    if (!s && r.off < size) {
        if ((s = need(&r, 8, "chunk count and dataset name length", -1))) goto done;
        int32_t chunks = i32(&r), len = i32(&r);
        if (chunks < 0 || len < 0) {
            s = lb_fail(err, LB_ERR_FORMAT, "%s: chunk count %d or dataset name length %d at offset %zu is negative", r.name,
                        (int)chunks, (int)len, r.off - 8);
            goto done;
        }
        if ((s = need(&r, (size_t)len, "dataset name", -1))) goto done;
        char *ds = malloc((size_t)len + 1);
        if (!ds) {
            s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(ds, r.p + r.off, (size_t)len);
        ds[len] = 0;
        r.off += (size_t)len;
        free(im->dataset);
        im->dataset = ds;
        im->n_chunks = chunks;
        if (r.off != size)
            s = lb_fail(err, LB_ERR_FORMAT, "%s: %zu bytes after the end at offset %zu", r.name, size - r.off, r.off);
    }
done:
    if (s) {
        lb_imatrix_free(im);
        return s;
    }
    *out = im;
    return LB_OK;
}

lb_status lb_imatrix_load(const char *path, lb_imatrix **out, lb_error *err) {
    char *buf;
    size_t len;
    *out = NULL;
    lb_status s = lb_read_file(path, (size_t)1 << 30, &buf, &len, err);
    if (s) return s;
    s = lb_imatrix_parse(buf, len, path, out, err);
    free(buf);
    return s;
}

/* ---- writing -------------------------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static lb_status w32(lb_atomic_file *f, uint32_t v, lb_error *err) {
    uint8_t b[4];
    put32(b, v);
    return lb_atomic_write(f, b, 4, err);
}

lb_status lb_imatrix_save(const lb_imatrix *im, const char *path, lb_error *err) {
    if (!im || im->n == 0 || im->n > INT32_MAX)
        return lb_fail(err, LB_ERR_ARG, "%s: an importance matrix needs at least one entry", path);
    lb_atomic_file *f;
    lb_status s = lb_atomic_open(path, &f, err);
    if (s) return s;
    uint8_t *buf = NULL;
    size_t cap = 0;
    s = w32(f, (uint32_t)im->n, err);
    for (size_t i = 0; i < im->n && !s; i++) {
        const lb_imatrix_entry *e = &im->e[i];
        size_t len = strlen(e->name), need_b = (size_t)e->nval * 4;
        if (!(s = w32(f, (uint32_t)len, err))) s = lb_atomic_write(f, e->name, len, err);
        if (!s) s = w32(f, (uint32_t)e->ncall, err);
        if (!s) s = w32(f, (uint32_t)e->nval, err);
        if (!s && need_b > cap) {
            uint8_t *nb = realloc(buf, need_b);
            if (!nb) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
            else buf = nb, cap = need_b;
        }
        for (int32_t j = 0; j < e->nval && !s; j++) {
            uint32_t u;
            memcpy(&u, &e->values[j], 4);
            put32(buf + 4 * (size_t)j, u);
        }
        if (!s) s = lb_atomic_write(f, buf, need_b, err);
    }
    size_t dl = strlen(im->dataset);
    if (!s) s = w32(f, (uint32_t)im->n_chunks, err);
    if (!s) s = w32(f, (uint32_t)dl, err);
    if (!s) s = lb_atomic_write(f, im->dataset, dl, err);
    free(buf);
    if (s) {
        lb_atomic_abort(f);
        return s;
    }
    return lb_atomic_commit(f, err);
}

/* ---- accessors ------------------------------------------------------------------------ */

size_t lb_imatrix_n_entries(const lb_imatrix *im) { return im ? im->n : 0; }
const char *lb_imatrix_name(const lb_imatrix *im, size_t i) { return im && i < im->n ? im->e[i].name : NULL; }
const float *lb_imatrix_values(const lb_imatrix *im, size_t i, int *nval, int *ncall) {
    if (!im || i >= im->n) return NULL;
    if (nval) *nval = im->e[i].nval;
    if (ncall) *ncall = im->e[i].ncall;
    return im->e[i].values;
}
int lb_imatrix_n_chunks(const lb_imatrix *im) { return im ? im->n_chunks : 0; }
const char *lb_imatrix_dataset(const lb_imatrix *im) { return im ? im->dataset : NULL; }
