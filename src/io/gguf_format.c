/* One-line printable rendering of GGUF metadata values, for `lowbit inspect`. Long strings
 * and arrays are abbreviated; the full length or count is always shown. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "io/gguf.h"

#define STR_SHOW 60     /* characters shown of a top-level string */
#define ELEM_STR_SHOW 24 /* characters shown of a string inside an array */
#define ARR_SHOW 8      /* elements shown of an array */

typedef struct out {
    char *buf;
    size_t cap, len; /* len may exceed cap: the text is cut, never overrun */
} out;

static void put(out *o, const char *fmt, ...) LB_PRINTF(2, 3);
static void put(out *o, const char *fmt, ...) {
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    for (int i = 0; i < n && tmp[i]; i++) {
        if (o->len + 1 < o->cap) o->buf[o->len] = tmp[i];
        o->len++;
    }
}

static void put_str(out *o, const char *s, size_t len, size_t show) {
    put(o, "\"");
    size_t n = len < show ? len : show;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') put(o, "\\%c", ch);
        else if (ch == '\n') put(o, "\\n");
        else if (ch == '\t') put(o, "\\t");
        else if (ch < 0x20 || ch == 0x7f) put(o, "\\x%02x", ch);
        else put(o, "%c", ch); /* UTF-8 bytes pass through */
    }
    put(o, "\"");
    if (len > show) put(o, "... (%zu bytes)", len);
}

static void put_scalar(out *o, lb_gguf_type t, const uint8_t *p) {
    uint64_t u = 0;
    for (size_t i = lb_gguf_type_size(t); i-- > 0;) u = u << 8 | p[i];
    switch (t) {
    case LB_GGUF_U8: case LB_GGUF_U16: case LB_GGUF_U32: case LB_GGUF_U64: put(o, "%" PRIu64, u); break;
    case LB_GGUF_I8: put(o, "%d", (int8_t)u); break;
    case LB_GGUF_I16: put(o, "%d", (int16_t)u); break;
    case LB_GGUF_I32: put(o, "%" PRId32, (int32_t)u); break;
    case LB_GGUF_I64: put(o, "%" PRId64, (int64_t)u); break;
    case LB_GGUF_BOOL: put(o, "%s", u ? "true" : "false"); break;
    case LB_GGUF_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        put(o, "%.9g", f);
        break;
    }
    case LB_GGUF_F64: {
        double d;
        memcpy(&d, &u, 8);
        put(o, "%.17g", d);
        break;
    }
    default: put(o, "?"); break;
    }
}

static void put_arr(out *o, const lb_gguf_arr *a) {
    put(o, "[");
    size_t n = a->n < ARR_SHOW ? a->n : ARR_SHOW;
    size_t esz = lb_gguf_type_size(a->type);
    for (size_t i = 0; i < n; i++) {
        if (i) put(o, ", ");
        if (a->type == LB_GGUF_STRING) {
            const char *s;
            size_t len;
            if (lb_gguf_arr_str(a, i, &s, &len, NULL) == LB_OK) put_str(o, s, len, ELEM_STR_SHOW);
        } else if (a->type == LB_GGUF_ARRAY) {
            lb_gguf_arr sub;
            if (lb_gguf_arr_arr(a, i, &sub, NULL) == LB_OK) put_arr(o, &sub);
        } else {
            put_scalar(o, a->type, (const uint8_t *)lb_gguf_arr_data(a) + i * esz);
        }
    }
    if (a->n > n) put(o, ", ...");
    put(o, "]");
    if (a->n > n || a->n == 0) put(o, " (%zu x %s)", a->n, lb_gguf_type_name(a->type));
}

void lb_gguf_kv_format(const lb_gguf *g, size_t i, char *buf, size_t cap) {
    if (!cap) return;
    out o = {buf, cap, 0};
    if (i >= lb_gguf_kv_count(g)) {
        put(&o, "?");
    } else {
        const void *raw;
        size_t size;
        lb_gguf_kv_raw(g, i, &raw, &size);
        lb_gguf_type t = lb_gguf_kv_type(g, i);
        if (t == LB_GGUF_STRING) {
            const char *s;
            size_t len;
            if (lb_gguf_get_str(g, lb_gguf_kv_key(g, i), &s, &len, NULL) == LB_OK) put_str(&o, s, len, STR_SHOW);
        } else if (t == LB_GGUF_ARRAY) {
            lb_gguf_arr a;
            if (lb_gguf_kv_arr(g, i, &a, NULL) == LB_OK) put_arr(&o, &a);
        } else {
            put_scalar(&o, t, raw);
        }
    }
    buf[o.len < cap ? o.len : cap - 1] = 0;
}
