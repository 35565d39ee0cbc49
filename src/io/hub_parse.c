/* The Hub client's parsers: references given by the user, response headers and the API's file
 * list. Everything here takes untrusted bytes; names that end up in cache paths are checked to
 * be plain (no "..", no absolute paths), so a hostile answer cannot write outside the cache. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "io/hub.h"

static int name_char(int c) { return isalnum(c) || c == '.' || c == '_' || c == '-'; }

static int plain_name(const char *s, size_t n) {
    if (!n || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i])) return 0;
    return 1;
}

int lb_hub_is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return s[n] == 0;
}

int lb_hub_safe_path(const char *p) {
    size_t n = strlen(p);
    if (!n || n > LB_HUB_PATH_MAX || p[0] == '/') return 0;
    for (const char *c = p; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == '\\' || *c == 0x7f) return 0;
    for (const char *s = p;;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (!len || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) return 0;
        if (!e) return 1;
        s = e + 1;
    }
}

lb_status lb_hub_parse_ref(const char *s, lb_hub_ref *r, lb_error *err) {
    memset(r, 0, sizeof *r);
    const char *full = s;
    if (!strncmp(s, "hf://", 5)) s += 5;
    const char *slash = strchr(s, '/');
    size_t on = slash ? (size_t)(slash - s) : 0;
    if (!slash || !plain_name(s, on) || on > LB_HUB_NAME_MAX)
        return lb_fail(err, LB_ERR_ARG, "'%s': not a Hub reference (want OWNER/NAME[@REVISION][:FILE|:QUANT])", full);
    memcpy(r->owner, s, on);
    const char *n0 = slash + 1, *n1 = n0;
    while (*n1 && *n1 != '@' && *n1 != ':') n1++;
    if (!plain_name(n0, (size_t)(n1 - n0)) || (size_t)(n1 - n0) > LB_HUB_NAME_MAX)
        return lb_fail(err, LB_ERR_ARG, "'%s': the repository name must be letters, digits, '.', '_' or '-'", full);
    memcpy(r->name, n0, (size_t)(n1 - n0));
    strcpy(r->revision, "main");
    if (*n1 == '@') {
        const char *v0 = n1 + 1, *v1 = strchr(v0, ':');
        size_t vn = v1 ? (size_t)(v1 - v0) : strlen(v0);
        if (!vn || vn >= sizeof r->revision)
            return lb_fail(err, LB_ERR_ARG, "'%s': empty or too long revision after '@'", full);
        memcpy(r->revision, v0, vn);
        r->revision[vn] = 0;
        /* a revision names a refs/ file in the cache: a branch like "refs/pr/1" is fine, ".." is not */
        if (!lb_hub_safe_path(r->revision)) return lb_fail(err, LB_ERR_ARG, "'%s': revision '%s' is not a plain name", full, r->revision);
        n1 = v1 ? v1 : v0 + vn;
    }
    if (*n1 == ':') {
        const char *sp = n1 + 1;
        if (!*sp || strlen(sp) > LB_HUB_PATH_MAX) return lb_fail(err, LB_ERR_ARG, "'%s': empty or too long file after ':'", full);
        strcpy(r->spec, sp);
        r->spec_is_file = strchr(sp, '.') || strchr(sp, '/');
        if (r->spec_is_file && !lb_hub_safe_path(sp))
            return lb_fail(err, LB_ERR_ARG, "'%s': '%s' is not a relative path inside the repository", full, sp);
        if (!r->spec_is_file && !plain_name(sp, strlen(sp)))
            return lb_fail(err, LB_ERR_ARG, "'%s': quantization tag '%s' must be letters, digits or '_'", full, sp);
    }
    return LB_OK;
}

/* ---- headers ------------------------------------------------------------------------------ */

int lb_hub_norm_etag(const char *in, size_t n, char *out, size_t cap) {
    while (n && isspace((unsigned char)*in)) in++, n--;
    while (n && isspace((unsigned char)in[n - 1])) n--;
    if (n >= 2 && (in[0] == 'W' || in[0] == 'w') && in[1] == '/') in += 2, n -= 2;
    if (n >= 2 && in[0] == '"' && in[n - 1] == '"') in++, n -= 2;
    if (!n || n >= cap || !plain_name(in, n)) return 0;
    memcpy(out, in, n);
    out[n] = 0;
    return 1;
}

static int header_is(const char *line, size_t n, const char *name, const char **val, size_t *vn) {
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) || line[k] != ':') return 0;
    const char *v = line + k + 1, *e = line + n;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
    *val = v;
    *vn = (size_t)(e - v);
    return 1;
}

static int parse_u64(const char *v, size_t n, uint64_t *out) {
    uint64_t x = 0;
    if (!n || n > 19) return 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)v[i])) return 0;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    *out = x;
    return 1;
}

static void set_field(char *dst, size_t cap, const char *v, size_t n) {
    if (n >= cap) n = 0; /* too long: left empty rather than cut */
    memcpy(dst, v, n);
    dst[n] = 0;
}

void lb_hub_header_line(lb_hub_head *h, const char *line, size_t n) {
    const char *v;
    size_t vn;
    if (n > 5 && !strncmp(line, "HTTP/", 5)) { /* a new answer (after a 100 or a redirect): start over */
        memset(h, 0, sizeof *h);
        const char *sp = memchr(line, ' ', n);
        uint64_t st = 0;
        if (sp && (size_t)(line + n - sp) > 3 && parse_u64(sp + 1, 3, &st)) h->status = (long)st;
        return;
    }
    if (header_is(line, n, "X-Repo-Commit", &v, &vn)) set_field(h->commit, sizeof h->commit, v, vn);
    else if (header_is(line, n, "X-Linked-Etag", &v, &vn)) {
        if (!lb_hub_norm_etag(v, vn, h->etag, sizeof h->etag)) h->etag[0] = 0;
        h->linked = 1;
    } else if (header_is(line, n, "ETag", &v, &vn)) {
        if (!h->linked && !lb_hub_norm_etag(v, vn, h->etag, sizeof h->etag)) h->etag[0] = 0;
    } else if (header_is(line, n, "X-Linked-Size", &v, &vn)) {
        h->has_size = parse_u64(v, vn, &h->size);
        h->linked = 1;
    } else if (header_is(line, n, "Content-Length", &v, &vn)) {
        if (!h->linked) h->has_size = parse_u64(v, vn, &h->size);
    } else if (header_is(line, n, "Location", &v, &vn)) set_field(h->location, sizeof h->location, v, vn);
    else if (header_is(line, n, "Content-Range", &v, &vn) && vn > 6 && !strncasecmp(v, "bytes ", 6)) {
        const char *d = memchr(v + 6, '-', vn - 6);
        h->has_range = d && parse_u64(v + 6, (size_t)(d - v - 6), &h->range_start);
    }
}

/* ---- the API's file list ------------------------------------------------------------------ */

void lb_hub_free_names(char **names, size_t n) {
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

lb_status lb_hub_parse_siblings(const char *json, size_t len, char *sha, size_t sha_cap, char ***names, size_t *n,
                                lb_error *err) {
    *names = NULL;
    *n = 0;
    if (sha_cap) sha[0] = 0;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return lb_fail(err, LB_ERR_FORMAT, "the Hub's model info is not JSON");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "sha");
    if (cJSON_IsString(s) && strlen(s->valuestring) == 40 && lb_hub_is_hex(s->valuestring, 40) && sha_cap > 40)
        strcpy(sha, s->valuestring);
    const cJSON *sib = cJSON_GetObjectItemCaseSensitive(root, "siblings");
    int cnt = cJSON_IsArray(sib) ? cJSON_GetArraySize(sib) : -1;
    lb_status st = cnt < 0 ? lb_fail(err, LB_ERR_FORMAT, "the Hub's model info has no \"siblings\" list") : LB_OK;
    char **out = !st && cnt ? calloc((size_t)cnt, sizeof *out) : NULL;
    if (!st && cnt && !out) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
    size_t k = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, sib) {
        if (st) break;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "rfilename");
        if (!cJSON_IsString(f) || !lb_hub_safe_path(f->valuestring)) continue; /* unusable names are skipped */
        if (!(out[k] = strdup(f->valuestring))) st = lb_fail(err, LB_ERR_NOMEM, "out of memory");
        else k++;
    }
    cJSON_Delete(root);
    if (st) {
        lb_hub_free_names(out, k);
        return st;
    }
    *names = out;
    *n = k;
    return LB_OK;
}

/* ---- which files a reference takes --------------------------------------------------------- */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int contains_ci(const char *s, const char *t) {
    for (size_t n = strlen(t); *s; s++)
        if (!strncasecmp(s, t, n)) return 1;
    return 0;
}

/* the files a safetensors model folder needs (a top-level name matching any of these) */
static int folder_file(const char *p) {
    static const char *const keep[] = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                                       "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt",
                                       "model.safetensors.index.json"};
    if (strchr(p, '/')) return 0;
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if (!strcmp(p, keep[i])) return 1;
    return ends_with(p, ".safetensors");
}

static lb_status list_ggufs(const lb_hub_ref *r, char *const *names, size_t n, const char *why, lb_error *err) {
    char list[320] = "";
    size_t used = 0, shown = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ends_with(names[i], ".gguf")) continue;
        int w = snprintf(list + used, sizeof list - used, "%s%s", shown ? ", " : "", names[i]);
        if (w < 0 || (size_t)w >= sizeof list - used) {
            memcpy(list + (used < sizeof list - 6 ? used : sizeof list - 6), ", ...", 6);
            break;
        }
        used += (size_t)w, shown++;
    }
    return lb_fail(err, LB_ERR_ARG, "%s/%s: %s; its GGUF files: %s", r->owner, r->name, why, shown ? list : "none");
}

lb_status lb_hub_pick(const lb_hub_ref *r, char *const *names, size_t n, size_t **pick, size_t *n_pick, int *folder,
                      lb_error *err) {
    *pick = NULL, *n_pick = 0, *folder = 0;
    size_t *out = malloc((n ? n : 1) * sizeof *out), k = 0, ggufs = 0;
    if (!out) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) ggufs += ends_with(names[i], ".gguf");
    if (r->spec_is_file) {
        for (size_t i = 0; i < n && !k; i++)
            if (!strcmp(names[i], r->spec)) out[k++] = i;
        if (!k) {
            free(out);
            return list_ggufs(r, names, n, "no such file in the repository", err);
        }
    } else if (r->spec[0] || ggufs) {
        for (size_t i = 0; i < n; i++)
            if (ends_with(names[i], ".gguf") && (!r->spec[0] || contains_ci(base_name(names[i]), r->spec))) out[k++] = i;
        if (k != 1) {
            char why[160];
            snprintf(why, sizeof why, k ? "'%s' matches %zu GGUF files (name one with :FILE)" : "no GGUF file matches '%s'",
                     r->spec[0] ? r->spec : "(no tag)", k);
            if (!r->spec[0]) snprintf(why, sizeof why, "%zu GGUF files (pick one with :QUANT or :FILE)", k);
            free(out);
            return list_ggufs(r, names, n, why, err);
        }
    } else {
        int cfg = 0, st = 0;
        for (size_t i = 0; i < n; i++) {
            if (!folder_file(names[i])) continue;
            out[k++] = i;
            cfg |= !strcmp(names[i], "config.json");
            st |= ends_with(names[i], ".safetensors");
        }
        if (!cfg || !st) {
            free(out);
            return lb_fail(err, LB_ERR_UNSUPPORTED, "%s/%s has neither a GGUF file nor config.json with safetensors weights",
                           r->owner, r->name);
        }
        *folder = 1;
    }
    *pick = out, *n_pick = k;
    return LB_OK;
}
