/* lowbit serve: the bytes that come from and go to the network, apart from JSON's meaning:
 * UTF-8 checks and repair, JSON nesting depth, a request body assembled from its upload pieces,
 * the API key check of an Authorization header, and a generation's text cut at its stop
 * strings. None of it needs a socket, so fuzz/fuzz_serve_request.c drives it directly. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve.h"

/* ---- UTF-8 and JSON depth ------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 when invalid or cut short. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

int sv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

size_t sv_utf8_whole(const char *s, size_t n) {
    /* step back over at most 3 continuation bytes to the last lead byte */
    size_t i = n;
    for (int back = 0; back < 4 && i > 0; back++) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) != 0x80) {
            size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            return n - (i - 1) >= need ? n : i - 1;
        }
        i--;
    }
    return n; /* a run of stray continuation bytes: invalid anyway, sent as U+FFFD */
}

/* A copy with every invalid sequence replaced by U+FFFD, so JSON output is always valid. */
char *sv_utf8_clean(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k && p[i]) {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *o = 0;
    return out;
}

int sv_json_depth(const char *s, size_t n) {
    int d = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '[' || c == '{') {
            if (++d > max) max = d;
        } else if (c == ']' || c == '}') d--;
    }
    return max;
}

/* ---- the request body ------------------------------------------------------------------------ */

int sv_body_too_large(const char *content_length, size_t max) {
    /* strtoull turns "-1" into a huge number: refused too, as it should be */
    return content_length && strtoull(content_length, NULL, 10) > max;
}

int sv_body_append(sv_body *b, const char *data, size_t n, size_t max) {
    if (n > max || b->len > max - n) return -1; /* a chunked body past the limit */
    if (b->len + n + 1 > b->cap) {
        /* doubling, but never past the limit: a body of max bytes costs max + 1 */
        size_t want = b->len + n + 1, cap = want <= (max + 1) / 2 ? want * 2 : max + 1;
        char *p = realloc(b->data, cap);
        if (!p) return -2;
        b->data = p;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

/* ---- the API key ------------------------------------------------------------------------------ */

int sv_auth_ok(const char *api_key, const char *authorization) {
    if (!api_key) return 1;
    /* RFC 7235: the scheme's name is case-insensitive */
    if (!authorization || strncasecmp(authorization, "Bearer ", 7)) return 0;
    const char *a = authorization + 7;
    size_t n = strlen(a), k = strlen(api_key);
    unsigned diff = n != k;
    /* every byte of the shorter compared whatever differs first: the time does not tell how much
     * of the key a guess got right */
    for (size_t i = 0; i < n && i < k; i++) diff |= (unsigned char)(a[i] ^ api_key[i]);
    return diff == 0;
}

/* ---- stop strings ----------------------------------------------------------------------------- */

/* Length of the longest suffix of the text that is a proper prefix of a stop string: held back
 * while streaming, since the next token may complete the stop string. */
static size_t stop_holdback(const sv_request *r) {
    size_t hold = 0;
    for (int i = 0; i < r->n_stop; i++) {
        size_t ls = strlen(r->stop[i]);
        for (size_t k = ls - 1; k > hold; k--) /* ls >= 1: empty stop strings are never kept */
            if (k <= r->text_len && !memcmp(r->text + r->text_len - k, r->stop[i], k)) {
                hold = k;
                break;
            }
    }
    return hold;
}

int sv_text_append(sv_request *r, const char *p, size_t n) {
    if (r->text_len + n + 1 > r->text_cap) {
        size_t cap = (r->text_len + n + 1) * 2;
        char *t = realloc(r->text, cap);
        if (!t) return -1;
        r->text = t;
        r->text_cap = cap;
    }
    size_t old = r->text_len;
    memcpy(r->text + r->text_len, p, n);
    r->text_len += n;
    r->text[r->text_len] = 0;
    /* The stop string that ends first wins (the longest of those ending at the same byte), as if
     * the text had come a byte at a time. A match must end in the new bytes (none was complete
     * before); memmem, since a token's bytes may hold a NUL. */
    size_t cut = (size_t)-1, cut_end = (size_t)-1;
    for (int i = 0; i < r->n_stop; i++) {
        size_t ls = strlen(r->stop[i]), from = old >= ls ? old - ls + 1 : 0;
        const char *hit = memmem(r->text + from, r->text_len - from, r->stop[i], ls);
        if (!hit) continue;
        size_t at = (size_t)(hit - r->text);
        if (at + ls < cut_end || (at + ls == cut_end && at < cut)) cut = at, cut_end = at + ls;
    }
    if (cut != (size_t)-1) {
        r->text_len = cut;
        r->text[cut] = 0;
        return 1;
    }
    r->text_safe = sv_utf8_whole(r->text, r->text_len - stop_holdback(r));
    return 0;
}
