#include "tokenizer/protobuf.h"

#include <string.h>

#include "core/error.h"

lb_pb lb_pb_init(const void *buf, size_t size, const char *name) {
    lb_pb r = {buf, 0, size, name ? name : "protobuf"};
    return r;
}

lb_pb lb_pb_sub(const lb_pb *parent, const lb_pb_field *f) {
    lb_pb r = {parent->buf, f->off, f->off + f->len, parent->name};
    return r;
}

static lb_status read_varint(lb_pb *r, uint64_t *out, lb_error *err) {
    uint64_t v = 0;
    size_t start = r->pos;
    for (int i = 0; i < 10; i++) {
        if (r->pos >= r->end)
            return lb_fail(err, LB_ERR_FORMAT, "%s: protobuf varint at byte %zu runs past the end of its message (byte %zu)",
                           r->name, start, r->end);
        uint8_t c = r->buf[r->pos++];
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return LB_OK;
        }
    }
    return lb_fail(err, LB_ERR_FORMAT, "%s: protobuf varint at byte %zu is longer than 10 bytes", r->name, start);
}

lb_status lb_pb_next(lb_pb *r, lb_pb_field *f, int *more, lb_error *err) {
    memset(f, 0, sizeof *f);
    *more = 0;
    if (r->pos >= r->end) return LB_OK;
    f->at = r->pos;
    uint64_t key = 0;
    lb_status s = read_varint(r, &key, err);
    if (s) return s;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->num == 0 || (key >> 3) > 0x1fffffff)
        return lb_fail(err, LB_ERR_FORMAT, "%s: protobuf field number %llu at byte %zu is invalid", r->name,
                       (unsigned long long)(key >> 3), f->at);
    size_t left = r->end - r->pos;
    switch (f->wire) {
    case LB_PB_VARINT:
        if ((s = read_varint(r, &f->v, err))) return s;
        break;
    case LB_PB_FIXED64:
    case LB_PB_FIXED32: {
        size_t n = f->wire == LB_PB_FIXED64 ? 8 : 4;
        if (left < n)
            return lb_fail(err, LB_ERR_FORMAT, "%s: protobuf field %u at byte %zu: %zu-byte value truncated", r->name,
                           f->num, f->at, n);
        for (size_t i = 0; i < n; i++) f->v |= (uint64_t)r->buf[r->pos + i] << (8 * i);
        r->pos += n;
        break;
    }
    case LB_PB_BYTES: {
        uint64_t len = 0;
        if ((s = read_varint(r, &len, err))) return s;
        if (len > r->end - r->pos)
            return lb_fail(err, LB_ERR_FORMAT, "%s: protobuf field %u at byte %zu: length %llu runs past the end (byte %zu)",
                           r->name, f->num, f->at, (unsigned long long)len, r->end);
        f->off = r->pos;
        f->len = (size_t)len;
        r->pos += (size_t)len;
        break;
    }
    default:
        return lb_fail(err, LB_ERR_FORMAT, "%s: protobuf field %u at byte %zu has unsupported wire type %d", r->name,
                       f->num, f->at, f->wire);
    }
    *more = 1;
    return LB_OK;
}

lb_status lb_pb_expect(const lb_pb *r, const lb_pb_field *f, int wire, const char *field, lb_error *err) {
    if (f->wire == wire) return LB_OK;
    return lb_fail(err, LB_ERR_FORMAT, "%s: field %s at byte %zu has wire type %d, expected %d", r->name, field, f->at,
                   f->wire, wire);
}

float lb_pb_float(const lb_pb_field *f) {
    uint32_t u = (uint32_t)f->v;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

int64_t lb_pb_int(const lb_pb_field *f) { return (int64_t)f->v; }
