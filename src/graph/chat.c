#include "graph/chat.h"
#include "core/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

lb_chat_style lb_chat_detect(const char *t) {
    if (!t) return LB_CHAT_NONE;
    if (strstr(t, "<|im_start|>")) return LB_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return LB_CHAT_LLAMA3;
    if (strstr(t, "[INST]") && strstr(t, "<<SYS>>")) return LB_CHAT_LLAMA2;
    if (strstr(t, "[INST]")) return LB_CHAT_MISTRAL;
    return LB_CHAT_NONE;
}

const char *lb_chat_style_name(lb_chat_style s) {
    static const char *names[] = {"none", "chatml", "llama3", "llama2", "mistral"};
    return (unsigned)s < 5 ? names[s] : "none";
}

static char *join(const char *fmt, const char *a, const char *b) {
    int n = snprintf(NULL, 0, fmt, a, b);
    char *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (out) snprintf(out, (size_t)n + 1, fmt, a, b);
    return out;
}

/* BOS is added by the tokenizer (add_special), never written as text, so SentencePiece
 * vocabularies (which treat "<s>" in text as plain characters) get the real token. Later turns
 * assume the end-of-turn token that stopped the previous answer was fed to the model. */
char *lb_chat_format_turn(lb_chat_style style, const char *system, const char *user, int first) {
    int sys = system && *system && first;
    switch (style) {
    case LB_CHAT_CHATML:
        if (sys) return join("<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", system, user);
        return join("%s<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", first ? "" : "\n", user);
    case LB_CHAT_LLAMA3:
        if (sys)
            return join("<|start_header_id|>system<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                        system, user);
        return join("%s<|start_header_id|>user<|end_header_id|>\n\n%s<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "", user);
    case LB_CHAT_LLAMA2:
        if (sys) return join("[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", system, user);
        return join("%s[INST] %s [/INST]", "", user);
    case LB_CHAT_MISTRAL:
        if (sys) return join("[INST] %s\n\n%s[/INST]", system, user);
        return join("%s[INST] %s[/INST]", "", user);
    case LB_CHAT_NONE: break;
    }
    return NULL;
}

/* ---- public: whole conversations (lb_chat_format) ------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = (b->n + k + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

const char *lb_chat_template_style(const char *jinja) {
    lb_chat_style s = lb_chat_detect(jinja);
    return s == LB_CHAT_NONE ? NULL : lb_chat_style_name(s);
}

static lb_chat_style style_of(const char *name) {
    for (int s = LB_CHAT_CHATML; s <= LB_CHAT_MISTRAL; s++)
        if (name && !strcmp(name, lb_chat_style_name((lb_chat_style)s))) return (lb_chat_style)s;
    return LB_CHAT_NONE;
}

/* ChatML and Llama 3 write every message as a header, the content and an end-of-turn marker. */
static void format_headed(sbuf *b, lb_chat_style st, const lb_chat_message *m, size_t n) {
    int ml = st == LB_CHAT_CHATML;
    for (size_t i = 0; i < n; i++) {
        put(b, ml ? "<|im_start|>" : "<|start_header_id|>");
        put(b, m[i].role);
        put(b, ml ? "\n" : "<|end_header_id|>\n\n");
        put(b, m[i].content);
        put(b, ml ? "<|im_end|>\n" : "<|eot_id|>");
    }
    put(b, ml ? "<|im_start|>assistant\n" : "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Llama 2 and Mistral wrap each user turn in [INST] ... [/INST] with the system text folded into
 * the first one; an earlier answer follows its turn as plain text (EOS/BOS between turns are
 * tokens the tokenizer would not make from text, so they are left out). */
static void format_inst(sbuf *b, lb_chat_style st, const lb_chat_message *m, size_t n) {
    const char *sys = NULL;
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            if (!sys) sys = m[i].content;
            continue;
        }
        if (!strcmp(m[i].role, "assistant")) {
            put(b, st == LB_CHAT_LLAMA2 ? " " : "");
            put(b, m[i].content);
            put(b, st == LB_CHAT_LLAMA2 ? " " : "");
            continue;
        }
        put(b, "[INST] ");
        if (first && sys && *sys) {
            put(b, st == LB_CHAT_LLAMA2 ? "<<SYS>>\n" : "");
            put(b, sys);
            put(b, st == LB_CHAT_LLAMA2 ? "\n<</SYS>>\n\n" : "\n\n");
        }
        put(b, m[i].content);
        put(b, st == LB_CHAT_LLAMA2 ? " [/INST]" : "[/INST]");
        first = 0;
    }
}

lb_status lb_chat_format(const char *style, const lb_chat_message *msgs, size_t n, char **out, lb_error *err) {
    *out = NULL;
    lb_chat_style st = style_of(style);
    if (st == LB_CHAT_NONE) return lb_fail(err, LB_ERR_ARG, "chat: unknown template style '%s'", style ? style : "(null)");
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content) return lb_fail(err, LB_ERR_ARG, "chat: message %zu has no role or content", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return lb_fail(err, LB_ERR_ARG, "chat: message %zu: role '%s' is not system, user or assistant", i, r);
    }
    sbuf b = {0};
    put(&b, "");
    if (st == LB_CHAT_CHATML || st == LB_CHAT_LLAMA3) format_headed(&b, st, msgs, n);
    else format_inst(&b, st, msgs, n);
    if (b.oom) {
        free(b.p);
        return lb_fail(err, LB_ERR_NOMEM, "chat: out of memory formatting %zu messages", n);
    }
    *out = b.p;
    return LB_OK;
}
