/* .lbz writer and reader. Layout: see lbz.h and docs/lbz.md. */
#include "compress/lbz.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>
#include <zstd.h>

#include "compress/byteplane.h"
#include "compress/codec.h"
#include "compress/pipeline.h"
#include "core/error.h"
#include "core/mapfile.h"

static const uint8_t k_magic[8] = {0x89, 'L', 'B', 'Z', '\r', '\n', 0x1a, '\n'};
static const uint8_t k_end_magic[8] = {'L', 'B', 'Z', 'I', 'N', 'D', 'E', 'X'};
#define PLANE_REC 8 /* u32 coded size, u8 method, 3 zero bytes */

typedef struct entry {
    uint64_t off, coff, hash;
    uint32_t size, csize;
    uint8_t esize, codec;
} entry;

/* ---- little-endian fields ---- */
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void entry_put(uint8_t *p, const entry *e) {
    memset(p, 0, LB_LBZ_ENTRY_SIZE);
    put64(p, e->off);
    put64(p + 8, e->coff);
    put32(p + 16, e->size);
    put32(p + 20, e->csize);
    put64(p + 24, e->hash);
    p[32] = e->esize;
    p[33] = e->codec;
}

lb_lbz_options lb_lbz_default_options(void) {
    lb_lbz_options o;
    memset(&o, 0, sizeof o);
    o.codec = LB_CODEC_ZSTD;
    o.level = 1; /* on float byte planes zstd -1 beats -3: matches cost more than they save */
    o.n_threads = 1;
    o.chunk_size = 1u << 20;
    o.header_len = LB_LBZ_HEADER_AUTO;
    return o;
}

/* Largest payload of a chunk of at most chunk bytes, whatever its element size. */
static size_t payload_bound(lb_codec c, size_t chunk) {
    size_t best = 0;
    for (size_t e = 1; e <= 4; e *= 2) {
        size_t b = e * (PLANE_REC + lb_codec_bound(c, chunk / e + 1));
        if (b > best) best = b;
    }
    return best;
}

static const char *name_or_empty(lb_lbz_name_fn fn, void *ud, uint64_t off) {
    const char *n = fn ? fn(off, ud) : NULL;
    return n ? n : "";
}

/* ================================ writer ================================ */

typedef struct seg {
    uint64_t off, len;
    uint32_t esize;
} seg;

/* Turns the caller's regions into typed segments tiling [header_len, size): gaps become opaque,
 * neighbours of one element size merge. */
static lb_status plan_segments(const char *in, uint64_t size, const lb_lbz_region *r, size_t n,
                               uint64_t *header_len, seg **out, size_t *n_out, lb_error *err) {
    uint64_t prev_end = 0, first_typed = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint32_t e = r[i].elem_size;
        if (e != 1 && e != 2 && e != 4)
            return lb_fail(err, LB_ERR_ARG, "%s: region %zu: elem_size %u is not 1, 2 or 4", in, i, e);
        if (r[i].offset < prev_end)
            return lb_fail(err, LB_ERR_ARG, "%s: region %zu at %llu overlaps or is out of order", in, i,
                           (unsigned long long)r[i].offset);
        if (r[i].length > size || r[i].offset > size - r[i].length)
            return lb_fail(err, LB_ERR_ARG, "%s: region %zu [%llu, +%llu) is past the end of the %llu-byte file",
                           in, i, (unsigned long long)r[i].offset, (unsigned long long)r[i].length,
                           (unsigned long long)size);
        if (r[i].length % e)
            return lb_fail(err, LB_ERR_ARG, "%s: region %zu length %llu is not a multiple of %u", in, i,
                           (unsigned long long)r[i].length, e);
        if (e > 1 && r[i].length && first_typed == UINT64_MAX) first_typed = r[i].offset;
        prev_end = r[i].offset + r[i].length;
    }
    uint64_t h = *header_len;
    if (h == LB_LBZ_HEADER_AUTO) h = first_typed == UINT64_MAX ? 0 : first_typed;
    if (h > size) return lb_fail(err, LB_ERR_ARG, "%s: header_len %llu > file size", in, (unsigned long long)h);
    *header_len = h;
    seg *s = malloc((2 * n + 2) * sizeof *s);
    if (!s) return lb_fail(err, LB_ERR_NOMEM, "%s: cannot allocate %zu segments", in, 2 * n + 2);
    size_t k = 0;
    uint64_t pos = h;
#define ADD(o, l, e)                                                                           \
    do {                                                                                       \
        if ((l) == 0) break;                                                                   \
        if (k && s[k - 1].esize == (e) && s[k - 1].off + s[k - 1].len == (o)) s[k - 1].len += (l); \
        else s[k++] = (seg){(o), (l), (e)};                                                    \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        uint64_t o = r[i].offset, l = r[i].length, end = o + l;
        if (end <= pos) continue;
        if (o < pos) { /* clipped by the header */
            if ((pos - o) % r[i].elem_size) {
                free(s);
                return lb_fail(err, LB_ERR_ARG, "%s: header_len %llu cuts an element of region %zu", in,
                               (unsigned long long)h, i);
            }
            o = pos;
            l = end - pos;
        }
        ADD(pos, o - pos, 1u);
        ADD(o, l, r[i].elem_size);
        pos = end;
    }
    ADD(pos, size - pos, 1u);
#undef ADD
    *out = s;
    *n_out = k;
    return LB_OK;
}

typedef struct wctx {
    const char *in;
    const uint8_t *data;
    uint64_t size, done;
    entry *ent;
    lb_codec codec;
    int level;
    lb_atomic_file *f;
    uint64_t pos;
    XXH64_state_t *fh;
    lb_progress_fn progress;
    void *ud;
} wctx;

static lb_status compress_chunk(void *vctx, lb_pipe_worker *w, size_t i, lb_pipe_slot *s, lb_error *err) {
    wctx *c = vctx;
    entry *e = &c->ent[i];
    const uint8_t *src = c->data + e->off;
    size_t es = e->esize, n = e->size / es;
    e->hash = XXH64(src, e->size, 0);
    const uint8_t *planes = src;
    if (es > 1) {
        lb_byteplane_split(src, w->scratch, n, es);
        planes = w->scratch;
    }
    size_t pos = es * PLANE_REC;
    for (size_t p = 0; p < es; p++) {
        size_t got;
        lb_codec used;
        lb_status st = lb_codec_compress(w->codec, c->codec, c->level, planes + p * n, n, s->buf + pos,
                                         s->cap - pos, &got, &used, err);
        if (st) return st;
        uint8_t *rec = s->buf + p * PLANE_REC;
        memset(rec, 0, PLANE_REC);
        put32(rec, (uint32_t)got);
        rec[4] = (uint8_t)used;
        pos += got;
    }
    s->len = pos;
    e->csize = (uint32_t)pos;
    return LB_OK;
}

static lb_status write_chunk(void *vctx, size_t i, lb_pipe_slot *s, lb_error *err) {
    wctx *c = vctx;
    entry *e = &c->ent[i];
    e->coff = c->pos;
    lb_status st = lb_atomic_write(c->f, s->buf, s->len, err);
    if (st) return st;
    c->pos += s->len;
    XXH64_update(c->fh, c->data + e->off, e->size);
    c->done += e->size;
    if (c->progress) c->progress(c->ud, "compressing", c->done, c->size);
    return LB_OK;
}

static lb_status check_options(const lb_lbz_options *o, lb_error *err) {
    if (o->codec != LB_CODEC_ZSTD && o->codec != LB_CODEC_LZ4)
        return lb_fail(err, LB_ERR_ARG, "lbz: codec must be zstd or lz4");
    if (o->codec == LB_CODEC_ZSTD && (o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel()))
        return lb_fail(err, LB_ERR_ARG, "lbz: zstd level %d outside [%d, %d]", o->level, ZSTD_minCLevel(),
                       ZSTD_maxCLevel());
    if (o->codec == LB_CODEC_LZ4 && o->level > 12) return lb_fail(err, LB_ERR_ARG, "lbz: lz4 level %d > 12", o->level);
    if (o->n_threads < 1 || o->n_threads > 1024) return lb_fail(err, LB_ERR_ARG, "lbz: n_threads %d", o->n_threads);
    if (o->chunk_size < LB_LBZ_MIN_CHUNK || o->chunk_size > LB_LBZ_MAX_CHUNK || o->chunk_size % 4)
        return lb_fail(err, LB_ERR_ARG, "lbz: chunk size %u not a multiple of 4 in [%u, %u]", o->chunk_size,
                       LB_LBZ_MIN_CHUNK, LB_LBZ_MAX_CHUNK);
    return LB_OK;
}

lb_status lb_lbz_compress(const char *in, const char *out, const lb_lbz_region *regions,
                          size_t n_regions, const lb_lbz_options *opt, lb_progress_fn progress,
                          void *ud, lb_error *err) {
    lb_lbz_options o = opt ? *opt : lb_lbz_default_options();
    lb_status st = check_options(&o, err);
    if (st) return st;
    if (n_regions && !regions) return lb_fail(err, LB_ERR_ARG, "lbz: regions is NULL");
    if ((st = lb_output_check(out, &in, 1, 0, err))) return st;
    lb_mapfile map;
    if ((st = lb_mapfile_open(in, &map, err))) return st;
    uint64_t header_len = o.header_len;
    seg *segs = NULL;
    size_t n_segs = 0, n_chunks = 0;
    entry *ent = NULL;
    uint8_t *index = NULL;
    lb_atomic_file *f = NULL;
    XXH64_state_t *fh = XXH64_createState();
    if (!fh) {
        st = lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", in);
        goto done;
    }
    if ((st = plan_segments(in, map.size, regions, n_regions, &header_len, &segs, &n_segs, err))) goto done;
    for (size_t i = 0; i < n_segs; i++) {
        uint64_t piece = o.chunk_size - o.chunk_size % segs[i].esize;
        n_chunks += (size_t)((segs[i].len + piece - 1) / piece);
    }
    if (!(ent = calloc(n_chunks ? n_chunks : 1, sizeof *ent)) ||
        !(index = malloc(n_chunks * LB_LBZ_ENTRY_SIZE + LB_LBZ_FOOTER_SIZE))) {
        st = lb_fail(err, LB_ERR_NOMEM, "%s: cannot allocate an index of %zu chunks", in, n_chunks);
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < n_segs; i++) {
        uint64_t piece = o.chunk_size - o.chunk_size % segs[i].esize;
        for (uint64_t p = 0; p < segs[i].len; p += piece) {
            ent[k].off = segs[i].off + p;
            ent[k].size = (uint32_t)(segs[i].len - p < piece ? segs[i].len - p : piece);
            ent[k].esize = (uint8_t)segs[i].esize;
            ent[k].codec = (uint8_t)o.codec;
            k++;
        }
    }
    if ((st = lb_atomic_open(out, &f, err))) goto done;
    uint8_t pre[LB_LBZ_PREAMBLE_SIZE] = {0};
    memcpy(pre, k_magic, 8);
    put32(pre + 8, LB_LBZ_VERSION);
    put32(pre + 12, LB_LBZ_PREAMBLE_SIZE);
    put64(pre + 16, map.size);
    put64(pre + 24, header_len);
    put64(pre + 32, XXH64(map.data, header_len, 0));
    put64(pre + 40, o.chunk_size);
    put64(pre + 56, XXH64(pre, 56, 0));
    if ((st = lb_atomic_write(f, pre, sizeof pre, err)) || (st = lb_atomic_write(f, map.data, header_len, err)))
        goto done;
    XXH64_reset(fh, 0);
    XXH64_update(fh, map.data, header_len);
    wctx c = {in, map.data, map.size, header_len, ent, o.codec, o.level, f,
              LB_LBZ_PREAMBLE_SIZE + header_len, fh, progress, ud};
    if (progress) progress(ud, "compressing", c.done, c.size);
    st = lb_pipe_run(n_chunks, o.n_threads, payload_bound(o.codec, o.chunk_size), o.chunk_size, compress_chunk,
                     write_chunk, &c, err);
    if (st) goto done;
    for (size_t i = 0; i < n_chunks; i++) entry_put(index + i * LB_LBZ_ENTRY_SIZE, &ent[i]);
    uint8_t *foot = index + n_chunks * LB_LBZ_ENTRY_SIZE;
    put64(foot, c.pos);
    put64(foot + 8, n_chunks);
    put64(foot + 16, XXH64(index, n_chunks * LB_LBZ_ENTRY_SIZE, 0));
    put64(foot + 24, XXH64_digest(fh));
    put64(foot + 32, XXH64(foot, 32, 0));
    memcpy(foot + 40, k_end_magic, 8);
    if ((st = lb_atomic_write(f, index, n_chunks * LB_LBZ_ENTRY_SIZE + LB_LBZ_FOOTER_SIZE, err))) goto done;
    st = lb_atomic_commit(f, err);
    f = NULL;
done:
    if (f) lb_atomic_abort(f);
    XXH64_freeState(fh);
    free(index);
    free(ent);
    free(segs);
    lb_mapfile_close(&map);
    return st;
}

/* ================================ reader ================================ */

struct lb_lbz {
    lb_mapfile map;
    uint64_t orig_size, header_len, chunk_size, file_hash, index_off;
    size_t n;
    entry *ent;
    lb_lbz_name_fn name_at;
    void *name_ud;
    lb_pipe_worker w; /* for lb_lbz_read */
    uint8_t *chunkbuf;
};

static lb_status parse(lb_lbz *z, lb_error *err) {
    const uint8_t *d = z->map.data;
    const char *path = z->map.path;
    uint64_t size = z->map.size;
    if (size < LB_LBZ_PREAMBLE_SIZE + LB_LBZ_FOOTER_SIZE)
        return lb_fail(err, LB_ERR_FORMAT, "%s: %llu bytes is too short for an .lbz file", path, (unsigned long long)size);
    if (memcmp(d, k_magic, 8) != 0) return lb_fail(err, LB_ERR_FORMAT, "%s: not an .lbz file (bad magic at offset 0)", path);
    if (get64(d + 56) != XXH64(d, 56, 0))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: preamble (offset 0..63) checksum mismatch", path);
    if (get32(d + 8) != LB_LBZ_VERSION)
        return lb_fail(err, LB_ERR_UNSUPPORTED, "%s: .lbz version %u (this build reads %d)", path, get32(d + 8), LB_LBZ_VERSION);
    if (get32(d + 12) != LB_LBZ_PREAMBLE_SIZE || get64(d + 48) != 0)
        return lb_fail(err, LB_ERR_FORMAT, "%s: preamble size or reserved field (offset 12, 48) invalid", path);
    z->orig_size = get64(d + 16);
    z->header_len = get64(d + 24);
    z->chunk_size = get64(d + 40);
    if (z->chunk_size < LB_LBZ_MIN_CHUNK || z->chunk_size > LB_LBZ_MAX_CHUNK)
        return lb_fail(err, LB_ERR_FORMAT, "%s: chunk size %llu at offset 40 out of range", path, (unsigned long long)z->chunk_size);
    if (z->header_len > z->orig_size || z->header_len > size - LB_LBZ_PREAMBLE_SIZE - LB_LBZ_FOOTER_SIZE)
        return lb_fail(err, LB_ERR_FORMAT, "%s: header length %llu at offset 24 past the end", path,
                       (unsigned long long)z->header_len);
    const uint8_t *ft = d + size - LB_LBZ_FOOTER_SIZE;
    uint64_t foot_off = size - LB_LBZ_FOOTER_SIZE;
    if (memcmp(ft + 40, k_end_magic, 8) != 0)
        return lb_fail(err, LB_ERR_FORMAT, "%s: no .lbz footer at offset %llu (truncated file?)", path, (unsigned long long)foot_off);
    if (get64(ft + 32) != XXH64(ft, 32, 0))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: footer at offset %llu checksum mismatch", path, (unsigned long long)foot_off);
    z->index_off = get64(ft);
    uint64_t n = get64(ft + 8);
    z->file_hash = get64(ft + 24);
    uint64_t data_start = LB_LBZ_PREAMBLE_SIZE + z->header_len;
    if (n > (foot_off - data_start) / LB_LBZ_ENTRY_SIZE || z->index_off != foot_off - n * LB_LBZ_ENTRY_SIZE)
        return lb_fail(err, LB_ERR_FORMAT, "%s: index of %llu chunks at offset %llu does not fit the file", path,
                       (unsigned long long)n, (unsigned long long)z->index_off);
    const uint8_t *ix = d + z->index_off;
    if (get64(ft + 16) != XXH64(ix, n * LB_LBZ_ENTRY_SIZE, 0))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: index at offset %llu checksum mismatch", path, (unsigned long long)z->index_off);
    z->n = (size_t)n;
    if (!(z->ent = calloc(n ? n : 1, sizeof *z->ent)))
        return lb_fail(err, LB_ERR_NOMEM, "%s: cannot allocate an index of %llu chunks", path, (unsigned long long)n);
    uint64_t want_off = z->header_len, want_coff = data_start;
    for (size_t i = 0; i < z->n; i++) {
        const uint8_t *p = ix + i * LB_LBZ_ENTRY_SIZE;
        entry *e = &z->ent[i];
        e->off = get64(p);
        e->coff = get64(p + 8);
        e->size = get32(p + 16);
        e->csize = get32(p + 20);
        e->hash = get64(p + 24);
        e->esize = p[32];
        e->codec = p[33];
        int zero = 1;
        for (int j = 34; j < LB_LBZ_ENTRY_SIZE; j++) zero &= p[j] == 0;
        const char *why = NULL;
        if (e->off != want_off) why = "original offset does not follow the previous chunk";
        else if (e->coff != want_coff) why = "payload offset does not follow the previous chunk";
        else if (e->esize != 1 && e->esize != 2 && e->esize != 4) why = "element size is not 1, 2 or 4";
        else if (e->size == 0 || e->size > z->chunk_size || e->size % e->esize) why = "bad chunk size";
        else if (e->size > z->orig_size - e->off) why = "chunk runs past the original size";
        else if (e->csize < (uint32_t)e->esize * PLANE_REC || e->csize > z->index_off - e->coff) why = "bad payload size";
        else if (e->codec > LB_CODEC_LZ4 || !zero) why = "bad codec or reserved bytes";
        if (why)
            return lb_fail(err, LB_ERR_FORMAT, "%s: index entry %zu (chunk %zu at original offset %llu): %s", path, i, i,
                           (unsigned long long)e->off, why);
        want_off += e->size;
        want_coff += e->csize;
    }
    if (want_off != z->orig_size || want_coff != z->index_off)
        return lb_fail(err, LB_ERR_FORMAT, "%s: chunks cover %llu of %llu original bytes", path,
                       (unsigned long long)want_off, (unsigned long long)z->orig_size);
    if (XXH64(d + LB_LBZ_PREAMBLE_SIZE, z->header_len, 0) != get64(d + 32))
        return lb_fail(err, LB_ERR_CORRUPT, "%s: header bytes (offset 64, %llu bytes) checksum mismatch", path,
                       (unsigned long long)z->header_len);
    return LB_OK;
}

lb_status lb_lbz_open(const char *path, lb_lbz_name_fn name_at, void *name_ud, lb_lbz **out, lb_error *err) {
    *out = NULL;
    lb_lbz *z = calloc(1, sizeof *z);
    if (!z) return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", path);
    z->name_at = name_at;
    z->name_ud = name_ud;
    lb_status st = lb_mapfile_open(path, &z->map, err);
    if (!st) st = parse(z, err);
    if (st) {
        lb_lbz_close(z);
        return st;
    }
    *out = z;
    return LB_OK;
}

void lb_lbz_close(lb_lbz *z) {
    if (!z) return;
    lb_pipe_worker_free(&z->w);
    free(z->chunkbuf);
    free(z->ent);
    lb_mapfile_close(&z->map);
    free(z);
}

void lb_lbz_set_name_fn(lb_lbz *z, lb_lbz_name_fn name_at, void *name_ud) {
    z->name_at = name_at;
    z->name_ud = name_ud;
}
uint64_t lb_lbz_original_size(const lb_lbz *z) { return z->orig_size; }
size_t lb_lbz_n_chunks(const lb_lbz *z) { return z->n; }
const void *lb_lbz_header(const lb_lbz *z, size_t *header_len) {
    if (header_len) *header_len = (size_t)z->header_len;
    return z->map.data + LB_LBZ_PREAMBLE_SIZE;
}

int lb_lbz_chunk(const lb_lbz *z, size_t i, lb_lbz_chunk_info *o) {
    if (i >= z->n) return 0;
    const entry *e = &z->ent[i];
    *o = (lb_lbz_chunk_info){e->off, e->coff, e->size, e->csize, e->esize, e->codec};
    return 1;
}

static lb_status chunk_fail(const lb_lbz *z, size_t i, lb_status s, const char *why, lb_error *err) {
    const entry *e = &z->ent[i];
    const char *name = name_or_empty(z->name_at, z->name_ud, e->off);
    return lb_fail(err, s, "%s: chunk %zu (original offset %llu, %u bytes%s%s%s): %s", z->map.path, i,
                   (unsigned long long)e->off, e->size, *name ? ", tensor '" : "", name, *name ? "'" : "", why);
}

/* Decodes chunk i into dst (e->size bytes) and verifies its checksum. */
static lb_status decode_chunk(const lb_lbz *z, lb_pipe_worker *w, size_t i, uint8_t *dst, lb_error *err) {
    const entry *e = &z->ent[i];
    const uint8_t *src = z->map.data + e->coff;
    size_t es = e->esize, n = e->size / es, pos = es * PLANE_REC;
    uint8_t *planes = es > 1 ? w->scratch : dst;
    for (size_t p = 0; p < es; p++) {
        const uint8_t *rec = src + p * PLANE_REC;
        size_t cs = get32(rec);
        if (rec[5] | rec[6] | rec[7]) return chunk_fail(z, i, LB_ERR_CORRUPT, "plane record has non-zero reserved bytes", err);
        if (cs > e->csize - pos) return chunk_fail(z, i, LB_ERR_CORRUPT, "plane sizes exceed the chunk payload", err);
        if (rec[4] != LB_CODEC_STORED && rec[4] != e->codec)
            return chunk_fail(z, i, LB_ERR_CORRUPT, "plane codec differs from the index", err);
        lb_error e2;
        if (lb_codec_decompress(w->codec, (lb_codec)rec[4], src + pos, cs, planes + p * n, n, &e2))
            return chunk_fail(z, i, LB_ERR_CORRUPT, e2.msg, err);
        pos += cs;
    }
    if (pos != e->csize) return chunk_fail(z, i, LB_ERR_CORRUPT, "plane sizes do not add up to the payload size", err);
    if (es > 1) lb_byteplane_merge(planes, dst, n, es);
    if (XXH64(dst, e->size, 0) != e->hash) return chunk_fail(z, i, LB_ERR_CORRUPT, "checksum mismatch", err);
    return LB_OK;
}

static size_t find_chunk(const lb_lbz *z, uint64_t off) { /* last chunk with e.off <= off */
    size_t lo = 0, hi = z->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->ent[mid].off <= off) lo = mid;
        else hi = mid;
    }
    return lo;
}

lb_status lb_lbz_read(lb_lbz *z, uint64_t offset, size_t len, void *dst, lb_error *err) {
    if (offset > z->orig_size || len > z->orig_size - offset)
        return lb_fail(err, LB_ERR_RANGE, "%s: read [%llu, +%zu) past the original size %llu", z->map.path,
                       (unsigned long long)offset, len, (unsigned long long)z->orig_size);
    uint8_t *out = dst;
    if (offset < z->header_len) {
        size_t k = (size_t)(z->header_len - offset) < len ? (size_t)(z->header_len - offset) : len;
        memcpy(out, z->map.data + LB_LBZ_PREAMBLE_SIZE + offset, k);
        out += k;
        offset += k;
        len -= k;
    }
    if (!len) return LB_OK;
    lb_status st;
    if (!z->w.codec && (st = lb_pipe_worker_init(&z->w, (size_t)z->chunk_size, err))) return st;
    if (!z->chunkbuf && !(z->chunkbuf = malloc((size_t)z->chunk_size)))
        return lb_fail(err, LB_ERR_NOMEM, "%s: cannot allocate a chunk buffer", z->map.path);
    for (size_t i = find_chunk(z, offset); len; i++) {
        const entry *e = &z->ent[i];
        size_t skip = (size_t)(offset - e->off), k = e->size - skip < len ? e->size - skip : len;
        if (skip == 0 && k == e->size) {
            if ((st = decode_chunk(z, &z->w, i, out, err))) return st;
        } else {
            if ((st = decode_chunk(z, &z->w, i, z->chunkbuf, err))) return st;
            memcpy(out, z->chunkbuf + skip, k);
        }
        out += k;
        offset += k;
        len -= k;
    }
    return LB_OK;
}

/* ---- whole-file restores ---- */

typedef struct rctx {
    lb_lbz *z;
    uint8_t *mem; /* to memory: chunks decode in place */
    lb_atomic_file *f;
    XXH64_state_t *fh;
    uint64_t done;
    lb_progress_fn progress;
    void *ud;
} rctx;

static lb_status restore_chunk(void *vctx, lb_pipe_worker *w, size_t i, lb_pipe_slot *s, lb_error *err) {
    rctx *c = vctx;
    const entry *e = &c->z->ent[i];
    uint8_t *dst = c->mem ? c->mem + e->off : s->buf;
    s->len = e->size;
    lb_status st = decode_chunk(c->z, w, i, dst, err);
    if (c->mem) {
        /* a restore to memory holds the whole original: drop each compressed chunk's pages once
         * decoded, so the peak is the original plus a few chunks, not plus the whole .lbz (only
         * pages wholly inside this chunk: a neighbour being decoded keeps its own) */
        uintptr_t a = (uintptr_t)(c->z->map.data + e->coff), b = a + e->csize, pg = 4096;
        a = (a + pg - 1) & ~(pg - 1);
        b &= ~(pg - 1);
        if (b > a && !c->z->map.heap) madvise((void *)a, b - a, MADV_DONTNEED);
    }
    return st;
}

static lb_status restore_emit(void *vctx, size_t i, lb_pipe_slot *s, lb_error *err) {
    rctx *c = vctx;
    if (c->f) {
        lb_status st = lb_atomic_write(c->f, s->buf, s->len, err);
        if (st) return st;
        XXH64_update(c->fh, s->buf, s->len);
    }
    c->done += c->z->ent[i].size;
    if (c->progress) c->progress(c->ud, "decompressing", c->done, c->z->orig_size);
    return LB_OK;
}

static lb_status whole_hash_fail(lb_lbz *z, lb_error *err) {
    return lb_fail(err, LB_ERR_CORRUPT, "%s: whole-file checksum mismatch (footer at offset %llu)", z->map.path,
                   (unsigned long long)(z->map.size - LB_LBZ_FOOTER_SIZE));
}

lb_status lb_lbz_extract(lb_lbz *z, const char *out, int n_threads, lb_progress_fn progress, void *ud, lb_error *err) {
    lb_atomic_file *f;
    const char *in = z->map.path;
    lb_status st = lb_output_check(out, &in, 1, 0, err);
    if (!st) st = lb_atomic_open(out, &f, err);
    if (st) return st;
    XXH64_state_t *fh = XXH64_createState();
    if (!fh) {
        lb_atomic_abort(f);
        return lb_fail(err, LB_ERR_NOMEM, "%s: out of memory", out);
    }
    XXH64_reset(fh, 0);
    const uint8_t *hdr = z->map.data + LB_LBZ_PREAMBLE_SIZE;
    XXH64_update(fh, hdr, z->header_len);
    rctx c = {z, NULL, f, fh, z->header_len, progress, ud};
    if (progress) progress(ud, "decompressing", c.done, z->orig_size);
    st = lb_atomic_write(f, hdr, z->header_len, err);
    if (!st) st = lb_pipe_run(z->n, n_threads, (size_t)z->chunk_size, (size_t)z->chunk_size, restore_chunk, restore_emit, &c, err);
    if (!st && XXH64_digest(fh) != z->file_hash) st = whole_hash_fail(z, err);
    XXH64_freeState(fh);
    if (st) {
        lb_atomic_abort(f);
        return st;
    }
    return lb_atomic_commit(f, err);
}

lb_status lb_lbz_extract_to_memory(lb_lbz *z, int n_threads, lb_progress_fn progress, void *ud, void **buf,
                                   size_t *size, lb_error *err) {
    *buf = NULL;
    *size = 0;
    if (z->orig_size > SIZE_MAX - 4096)
        return lb_fail(err, LB_ERR_NOMEM, "%s: original size %llu too large", z->map.path, (unsigned long long)z->orig_size);
    void *mem = NULL;
    size_t alloc = z->orig_size ? (size_t)z->orig_size : 1;
    /* a restored model is mostly page faults on fresh memory: large ones go on transparent
     * huge pages (2 MiB alignment; still freed with free()) */
    size_t align = alloc >= ((size_t)8 << 20) ? ((size_t)2 << 20) : 4096;
    if (align > 4096) alloc = (alloc + align - 1) / align * align;
    if (posix_memalign(&mem, align, alloc) != 0)
        return lb_fail(err, LB_ERR_NOMEM, "%s: cannot allocate %llu bytes for the restored file", z->map.path,
                       (unsigned long long)z->orig_size);
    if (align > 4096) madvise(mem, alloc, MADV_HUGEPAGE);
    memcpy(mem, z->map.data + LB_LBZ_PREAMBLE_SIZE, z->header_len);
    rctx c = {z, mem, NULL, NULL, z->header_len, progress, ud};
    if (progress) progress(ud, "decompressing", c.done, z->orig_size);
    lb_status st = lb_pipe_run(z->n, n_threads, 0, (size_t)z->chunk_size, restore_chunk, restore_emit, &c, err);
    if (!st && XXH64(mem, (size_t)z->orig_size, 0) != z->file_hash) st = whole_hash_fail(z, err);
    if (st) {
        free(mem);
        return st;
    }
    *buf = mem;
    *size = (size_t)z->orig_size;
    return LB_OK;
}

lb_status lb_lbz_decompress(const char *in, const char *out, int n_threads, lb_progress_fn progress, void *ud,
                            lb_error *err) {
    lb_lbz *z;
    lb_status st = lb_lbz_open(in, NULL, NULL, &z, err);
    if (st) return st;
    st = lb_lbz_extract(z, out, n_threads, progress, ud, err);
    lb_lbz_close(z);
    return st;
}

lb_status lb_lbz_decompress_to_memory(const char *in, int n_threads, void **buf, size_t *size, lb_error *err) {
    *buf = NULL;
    *size = 0;
    lb_lbz *z;
    lb_status st = lb_lbz_open(in, NULL, NULL, &z, err);
    if (st) return st;
    st = lb_lbz_extract_to_memory(z, n_threads, NULL, NULL, buf, size, err);
    lb_lbz_close(z);
    return st;
}
