/* Chat templates: recognised from real tokenizer_config.json templates, and the formatted
 * turns equal what the templates produce (written out by hand from the Jinja text). */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "check.h"
#include "core/mapfile.h"
#include "graph/chat.h"

static char *template_of(const char *path) {
    char *text;
    size_t n;
    lb_error err;
    if (lb_read_file(path, 1 << 24, &text, &n, &err)) return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
    char *out = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

int main(void) {
    char *smol = template_of(SHARED("tokenizers/smollm2-135m/tokenizer_config.json"));
    CHECK(smol && lb_chat_detect(smol) == LB_CHAT_CHATML, "smollm2 uses ChatML");
    free(smol);
    CHECK(lb_chat_detect(NULL) == LB_CHAT_NONE);
    CHECK(lb_chat_detect("{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}") == LB_CHAT_MISTRAL);
    CHECK(lb_chat_detect("[INST] <<SYS>>\n{{ system }}\n<</SYS>>") == LB_CHAT_LLAMA2);
    CHECK(lb_chat_detect("<|start_header_id|>{{ role }}<|end_header_id|>") == LB_CHAT_LLAMA3);
    CHECK(lb_chat_detect("{{ messages }}") == LB_CHAT_NONE);

    struct { lb_chat_style st; const char *sys; int first; const char *want; } cases[] = {
        {LB_CHAT_CHATML, NULL, 1, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
        {LB_CHAT_CHATML, "Be brief.", 1, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
        {LB_CHAT_CHATML, NULL, 0, "\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
        {LB_CHAT_LLAMA3, NULL, 0, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {LB_CHAT_LLAMA3, NULL, 1, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {LB_CHAT_LLAMA2, "S", 1, "[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST]"},
        {LB_CHAT_MISTRAL, NULL, 1, "[INST] Hi[/INST]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *got = lb_chat_format_turn(cases[i].st, cases[i].sys, "Hi", cases[i].first);
        CHECK(got && !strcmp(got, cases[i].want), "case %zu: got [%s]", i, got ? got : "(null)");
        free(got);
    }
    CHECK(lb_chat_format_turn(LB_CHAT_NONE, NULL, "Hi", 1) == NULL);

    /* lb_chat_format (the public multi-turn formatter): a first turn equals lb_chat_format_turn's */
    for (int st = LB_CHAT_CHATML; st <= LB_CHAT_MISTRAL; st++) {
        const char *name = lb_chat_style_name((lb_chat_style)st);
        lb_chat_message msgs[] = {{"system", "Be brief."}, {"user", "Hi"}};
        char *got = NULL, *want = lb_chat_format_turn((lb_chat_style)st, "Be brief.", "Hi", 1);
        lb_error err;
        CHECK(lb_chat_format(name, msgs, 2, &got, &err) == LB_OK && want && !strcmp(got, want), "%s: [%s]", name, got ? got : "");
        free(got);
        free(want);
    }
    lb_chat_message conv[] = {{"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
    char *got = NULL;
    lb_error err;
    CHECK(lb_chat_format("chatml", conv, 3, &got, &err) == LB_OK && !strcmp(got,
          "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"), "chatml conversation: [%s]", got ? got : "");
    free(got);
    CHECK(lb_chat_format("mistral", conv, 3, &got, &err) == LB_OK && !strcmp(got, "[INST] Hi[/INST]Hello.[INST] Bye[/INST]"), "mistral conversation: [%s]", got ? got : "");
    free(got);
    CHECK(lb_chat_format("jinja", conv, 3, &got, &err) == LB_ERR_ARG && got == NULL);
    lb_chat_message bad[] = {{"tool", "x"}};
    CHECK(lb_chat_format("chatml", bad, 1, &got, &err) == LB_ERR_ARG && strstr(err.msg, "role 'tool'"));
    CHECK(lb_chat_template_style("{{ '<|im_start|>' }}") && !strcmp(lb_chat_template_style("<|im_start|>"), "chatml"));
    CHECK(lb_chat_template_style("{{ messages }}") == NULL);
    return test_summary();
}
