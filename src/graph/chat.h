/* Chat prompt formatting for the common templates, recognised from the model's Jinja text. */
#ifndef LB_GRAPH_CHAT_H
#define LB_GRAPH_CHAT_H
#include <stddef.h>
#include "lowbit.h"

typedef enum lb_chat_style { LB_CHAT_NONE = 0, LB_CHAT_CHATML, LB_CHAT_LLAMA3, LB_CHAT_LLAMA2, LB_CHAT_MISTRAL } lb_chat_style;

lb_chat_style lb_chat_detect(const char *jinja);
const char *lb_chat_style_name(lb_chat_style s);
/* Formats one turn (system may be NULL; first: the conversation's first turn) followed by the
 * assistant's opening. Returns a malloc'ed string, or NULL on allocation failure. */
char *lb_chat_format_turn(lb_chat_style style, const char *system, const char *user, int first);
#endif
