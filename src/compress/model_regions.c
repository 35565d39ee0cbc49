/* Typed regions of a model file for the .lbz compressor, and a tensor-name lookup for its
 * error messages. The tensor table comes from the GGUF or safetensors reader; for a .lbz the
 * kept header is parsed against a zero-filled stand-in of the original size (an anonymous,
 * unbacked mapping), which is all the readers need to place the tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "compress/lbz.h"
#include "compress/model_regions.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "io/gguf.h"
#include "io/safetensors.h"

typedef struct span {
    uint64_t off, len;
    uint32_t esize;
    char *name;
} span;

struct lb_model_regions {
    char *file;
    char format[16];
    uint64_t header_len, file_size;
    span *s;
    size_t n;
    lb_lbz_region *r;
    size_t nr;
};

static const uint8_t k_lbz_magic[8] = {0x89, 'L', 'B', 'Z', '\r', '\n', 0x1a, '\n'};

int lb_lbz_is_container(const void *data, size_t size) {
    return size >= 8 && memcmp(data, k_lbz_magic, 8) == 0;
}

static int by_offset(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

static uint32_t esize_lb(uint32_t type) {
    switch (type) {
    case LB_F32: return 4;
    case LB_F16: case LB_BF16: return 2;
    default: return 1;
    }
}

static uint32_t esize_st(lb_st_dtype t) {
    switch (t) {
    case LB_ST_F32: case LB_ST_I32: case LB_ST_U32: return 4;
    case LB_ST_F16: case LB_ST_BF16: case LB_ST_I16: case LB_ST_U16: return 2;
    default: return 1;
    }
}

static lb_status add_span(lb_model_regions *r, size_t cap, uint64_t off, uint64_t len, uint32_t es, const char *name,
                          lb_error *err) {
    if (r->n >= cap) return lb_fail(err, LB_ERR_FORMAT, "%s: too many tensors", r->file);
    span *s = &r->s[r->n];
    s->off = off, s->len = len, s->esize = es;
    if (!(s->name = strdup(name))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    r->n++;
    return LB_OK;
}

/* Reads the tensor table of a GGUF or safetensors image into r->s. */
static lb_status spans_from_image(lb_model_regions *r, const void *data, size_t size, lb_error *err) {
    lb_status s;
    r->file_size = size;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        lb_gguf *g;
        if ((s = lb_gguf_parse(data, size, r->file, &g, err))) return s;
        size_t n = lb_gguf_tensor_count(g);
        snprintf(r->format, sizeof r->format, "gguf");
        r->header_len = lb_gguf_data_offset(g);
        if (!(r->s = calloc(n ? n : 1, sizeof *r->s))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n && !s; i++) {
            const lb_tensor *t = lb_gguf_tensor(g, i);
            s = add_span(r, n, r->header_len + lb_gguf_tensor_offset(g, i), t->nbytes, esize_lb(t->type), t->name, err);
        }
        lb_gguf_close(g);
        return s;
    }
    lb_safetensors *st;
    if ((s = lb_safetensors_parse(data, size, r->file, &st, err))) {
        /* a JSON header at byte 8 is a safetensors file: its own message (truncated, bad
         * offsets) is the one that helps; only other bytes are "neither" */
        const unsigned char *b = data;
        char hex[40];
        if (size < 9 || b[8] != '{')
            lb_fail(err, s, "%s: not a GGUF or safetensors file (first bytes %s); compress takes those two", r->file,
                    lb_head_hex(b, size, hex));
        return LB_ERR_FORMAT;
    }
    size_t n = lb_safetensors_count(st);
    snprintf(r->format, sizeof r->format, "safetensors");
    r->header_len = lb_safetensors_data_offset(st);
    if (!(r->s = calloc(n ? n : 1, sizeof *r->s))) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !s; i++) {
        const lb_st_tensor *t = lb_safetensors_info(st, i);
        s = add_span(r, n, t->offset, t->nbytes, esize_st(t->dtype), t->name, err);
    }
    lb_safetensors_close(st);
    return s;
}

/* Regions: the spans in offset order; an overlapping or misaligned span is left opaque. */
static lb_status build_regions(lb_model_regions *r, lb_error *err) {
    qsort(r->s, r->n, sizeof *r->s, by_offset);
    if (!(r->r = calloc(r->n ? r->n : 1, sizeof *r->r))) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    uint64_t end = 0;
    for (size_t i = 0; i < r->n; i++) {
        const span *s = &r->s[i];
        if (s->len == 0 || s->off < end || s->len % s->esize) continue;
        r->r[r->nr++] = (lb_lbz_region){s->off, s->len, s->esize};
        end = s->off + s->len;
    }
    return LB_OK;
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static lb_status from_lbz(lb_model_regions *r, lb_error *err) {
    lb_lbz *z;
    lb_status s = lb_lbz_open(r->file, NULL, NULL, &z, err);
    if (s) return s;
    size_t hl;
    const void *h = lb_lbz_header(z, &hl);
    uint64_t size = lb_lbz_original_size(z);
    void *img = size ? mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                     : MAP_FAILED;
    if (img == MAP_FAILED) s = lb_fail(err, LB_ERR_NOMEM, "%s: cannot reserve %llu bytes of address space", r->file,
                                       (unsigned long long)size);
    else {
        memcpy(img, h, hl);
        s = spans_from_image(r, img, (size_t)size, err);
        munmap(img, (size_t)size);
    }
    lb_lbz_close(z);
    if (!s) snprintf(r->format + strlen(r->format), sizeof r->format - strlen(r->format), ".lbz");
    return s;
}

lb_status lb_model_regions_open(const char *path, lb_model_regions **out, lb_error *err) {
    *out = NULL;
    lb_model_regions *r = calloc(1, sizeof *r);
    if (!r) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_status s = LB_OK;
    if (is_dir(path)) r->file = lb_path_join(path, "model.safetensors"); /* a Hugging Face folder: its weights */
    else r->file = strdup(path);
    if (!r->file) s = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    lb_mapfile mf;
    if (!s && (s = lb_mapfile_open(r->file, &mf, err)) && is_dir(path))
        lb_fail(err, s, "%s: a folder is compressed through its model.safetensors, which cannot be opened (%s); "
                        "sharded folders: compress each shard file", path, err->msg);
    if (!s) {
        if (lb_lbz_is_container(mf.data, mf.size)) {
            lb_mapfile_close(&mf);
            s = from_lbz(r, err);
        } else {
            s = spans_from_image(r, mf.data, mf.size, err);
            lb_mapfile_close(&mf);
        }
    }
    if (!s) s = build_regions(r, err);
    if (s) {
        lb_model_regions_free(r);
        return s;
    }
    *out = r;
    return LB_OK;
}

void lb_model_regions_free(lb_model_regions *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) free(r->s[i].name);
    free(r->s);
    free(r->r);
    free(r->file);
    free(r);
}

const lb_lbz_region *lb_model_regions_get(const lb_model_regions *r, size_t *n) {
    *n = r->nr;
    return r->r;
}
uint64_t lb_model_regions_header_len(const lb_model_regions *r) { return r->header_len; }
const char *lb_model_regions_file(const lb_model_regions *r) { return r->file; }
const char *lb_model_regions_format(const lb_model_regions *r) { return r->format; }
size_t lb_model_regions_n_tensors(const lb_model_regions *r) { return r->n; }

const char *lb_model_regions_name_at(uint64_t offset, void *ud) {
    const lb_model_regions *r = ud;
    if (!r) return NULL;
    if (offset < r->header_len) return "(file header)";
    size_t lo = 0, hi = r->n; /* last span with off <= offset */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (r->s[mid].off <= offset) lo = mid;
        else hi = mid;
    }
    if (r->n && r->s[lo].off <= offset && offset < r->s[lo].off + r->s[lo].len) return r->s[lo].name;
    /* a chunk may start in padding just before a tensor: name the next one */
    if (lo + 1 < r->n && r->s[lo + 1].off > offset) return r->s[lo + 1].name;
    return NULL;
}

/* Slack past the last tensor a restored model file may have (GGUF alignment padding). */
#define LB_RESTORE_SLACK ((uint64_t)1 << 20)

lb_status lb_lbz_restore_check(const char *path, lb_model_regions **names, uint64_t *orig_size, lb_error *err) {
    *names = NULL;
    lb_model_regions *r;
    /* the kept header must describe a model before anything is allocated for its restore */
    lb_status s = lb_model_regions_open(path, &r, err);
    if (s) return s;
    uint64_t end = r->header_len;
    for (size_t i = 0; i < r->n; i++)
        if (r->s[i].off + r->s[i].len > end) end = r->s[i].off + r->s[i].len;
    if (r->file_size > end + LB_RESTORE_SLACK) {
        s = lb_fail(err, LB_ERR_FORMAT, "%s: declares an original size of %llu bytes but the tensors of its kept header (%s) end at byte %llu; "
                    "refusing to restore it", path, (unsigned long long)r->file_size, r->format, (unsigned long long)end);
        lb_model_regions_free(r);
        return s;
    }
    *orig_size = r->file_size;
    *names = r;
    return LB_OK;
}

lb_status lb_lbz_restore_named(const char *path, int n_threads, lb_progress_fn progress, void *ud, void **buf,
                               size_t *size, lb_error *err) {
    lb_model_regions *names = NULL;
    uint64_t orig;
    lb_status s = lb_lbz_restore_check(path, &names, &orig, err);
    if (s) return s;
    lb_lbz *z;
    s = lb_lbz_open(path, lb_model_regions_name_at, names, &z, err);
    if (!s) {
        s = lb_lbz_extract_to_memory(z, n_threads, progress, ud, buf, size, err);
        lb_lbz_close(z);
    }
    lb_model_regions_free(names);
    return s;
}
