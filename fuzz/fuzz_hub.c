/* libFuzzer over the Hub client's parsers: a reference, response header lines and the model
 * info JSON, then the file choice over whatever names survived. Every accepted name must be a
 * safe relative path (it is joined under the cache), every picked index in range. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* input: REF '\n' HEADER LINES... '\0' JSON */
    const char *p = (const char *)data, *end = p + size;
    const char *nl = memchr(p, '\n', size), *z = memchr(p, 0, size);
    char ref[2048];
    size_t rn = nl ? (size_t)(nl - p) : size < sizeof ref - 1 ? size : sizeof ref - 1;
    if (rn >= sizeof ref) rn = sizeof ref - 1;
    memcpy(ref, p, rn);
    ref[rn] = 0;
    lb_hub_ref r;
    lb_error err;
    int ref_ok = lb_hub_parse_ref(ref, &r, &err) == LB_OK;
    if (ref_ok && (r.spec_is_file && !lb_hub_safe_path(r.spec))) __builtin_trap();
    lb_hub_head h;
    memset(&h, 0, sizeof h);
    const char *hs = nl ? nl + 1 : end, *he = z && z > hs ? z : end;
    while (hs < he) {
        const char *e = memchr(hs, '\n', (size_t)(he - hs));
        size_t n = e ? (size_t)(e - hs) + 1 : (size_t)(he - hs);
        lb_hub_header_line(&h, hs, n);
        hs += n;
    }
    if (strchr(h.etag, '/') || strchr(h.etag, '"')) __builtin_trap(); /* it names a blob file */
    if (!z) return 0;
    char sha[41], **names = NULL;
    size_t n = 0;
    if (lb_hub_parse_siblings(z + 1, (size_t)(end - z - 1), sha, sizeof sha, &names, &n, &err) == LB_OK) {
        for (size_t i = 0; i < n; i++)
            if (!lb_hub_safe_path(names[i])) __builtin_trap();
        if (ref_ok) {
            size_t *pick = NULL, np = 0;
            int folder = 0;
            if (lb_hub_pick(&r, names, n, &pick, &np, &folder, &err) == LB_OK)
                for (size_t i = 0; i < np; i++)
                    if (pick[i] >= n) __builtin_trap();
            free(pick);
        }
        lb_hub_free_names(names, n);
    }
    return 0;
}
