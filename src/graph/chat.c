#include "graph/chat.h"

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
