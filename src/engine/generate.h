/* The generation loop's shared steps (generate.c), so the speculative loop (spec.c) takes,
 * streams and stops on tokens exactly as the plain one does. */
#ifndef LB_ENGINE_GENERATE_H
#define LB_ENGINE_GENERATE_H
#include "engine/session.h"

/* The loop's state: output text with how much of it has been streamed. */
typedef struct lb_gen {
    lb_session *s;
    const lb_generate_params *p;
    const lb_tokenizer *tok;
    lb_generate_result *r;
    size_t sent, text_cap, ids_cap;
    float *logits; /* [n_vocab] the next token's logits */
} lb_gen;

/* A sampled token: it becomes the session's pending token and is added to the output and
 * streamed. Returns 1 when generation ends with it (r->stop says why), 0 to go on. */
int lb_gen_take(lb_gen *g, int32_t id, lb_status *st, lb_error *err);
/* Before feeding the pending token: 1 when the memory guard or a full context ends generation
 * (r->stop set, notice given), else 0. */
int lb_gen_must_stop(lb_gen *g);
/* The speculative loop (spec.c), used instead of the plain one when p->draft or p->lookup is set;
 * the first token has been taken from g->logits already. */
lb_status lb_spec_loop(lb_gen *g, lb_sampler *smp, lb_error *err);
/* Checks the speculative options and the draft's vocabulary against the target's. */
lb_status lb_spec_check(const lb_session *s, const lb_generate_params *p, lb_error *err);

#endif
