/* Parsing and printing byte sizes in binary units (6G = 6 GiB). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "mem/budget.h"

__extension__ typedef unsigned __int128 u128;

static lb_status size_fail(lb_error *err, lb_status st, const char *s, const char *why) {
    return lb_fail(err, st, "size '%.64s': %s", s, why);
}

/* Unit letter to shift; -1 when not a unit. */
static int unit_shift(char c) {
    switch (tolower((unsigned char)c)) {
    case 'b': return 0;
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    }
    return -1;
}

lb_status lb_size_parse(const char *s, uint64_t *out, lb_error *err) {
    if (!s || !out) return lb_fail(err, LB_ERR_ARG, "lb_size_parse: NULL argument");
    const char *p = s;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return size_fail(err, LB_ERR_ARG, s, "empty");
    if (*p == '-') return size_fail(err, LB_ERR_ARG, s, "negative");
    u128 ip = 0, frac = 0, scale = 1;
    int n_int = 0, n_frac = 0;
    for (; isdigit((unsigned char)*p); p++, n_int++)
        if (ip <= ((u128)1 << 100)) ip = ip * 10 + (u128)(*p - '0');
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++, n_frac++)
            if (n_frac < 18) frac = frac * 10 + (u128)(*p - '0'), scale *= 10;
    if (!n_int && !n_frac) return size_fail(err, LB_ERR_ARG, s, "not a number (expected e.g. 6G, 512M, 1.5GiB, 100000)");
    while (*p == ' ') p++;
    int shift = 0;
    if (*p) {
        shift = unit_shift(*p);
        if (shift < 0) return size_fail(err, LB_ERR_ARG, s, "unknown unit (use B, K, M, G, T or P)");
        int letter_b = tolower((unsigned char)*p) == 'b';
        p++;
        if (!letter_b) { /* G, GB, GiB */
            if (tolower((unsigned char)p[0]) == 'i' && tolower((unsigned char)p[1]) == 'b') p += 2;
            else if (tolower((unsigned char)p[0]) == 'b') p++;
        }
        while (isspace((unsigned char)*p)) p++;
        if (*p) return size_fail(err, LB_ERR_ARG, s, "unexpected text after the unit");
    }
    if (shift == 0 && frac) return size_fail(err, LB_ERR_ARG, s, "a byte count must be a whole number");
    if (ip > ((u128)1 << 60)) return size_fail(err, LB_ERR_RANGE, s, "absurdly large (more than 1 PiB)");
    u128 bytes = (ip << shift) + ((frac << shift) / scale);
    if (bytes == 0) return size_fail(err, LB_ERR_RANGE, s, "zero");
    if (bytes > LB_SIZE_MAX) return size_fail(err, LB_ERR_RANGE, s, "absurdly large (more than 1 PiB)");
    *out = (uint64_t)bytes;
    return LB_OK;
}

const char *lb_size_format(uint64_t n, char *buf, size_t cap) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!buf || !cap) return buf;
    if (n < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)n);
        return buf;
    }
    int i = 0;
    double v = (double)n;
    while (v >= 1024 && i < 6) v /= 1024, i++;
    snprintf(buf, cap, "%.2f %s", v, unit[i]);
    return buf;
}
