/* A one-line progress bar on stderr: what, bytes done of total, rate, ETA. Quiet when stderr
 * is not a terminal, except for a final line. */
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_progress(void *user, const char *what, uint64_t done, uint64_t total) {
    cli_progress_state *st = user;
    double now = cli_now();
    if (!st->t0) st->t0 = now;
    int finished = total && done >= total;
    if (!finished && now - st->last < 0.1) return;
    st->last = now;
    if (!isatty(2)) {
        if (finished && !st->ended) {
            char b[32];
            fprintf(stderr, "lowbit: %s %s in %.1f s\n", st->label ? st->label : "done", cli_human_bytes(total, b, sizeof b),
                    now - st->t0);
            st->ended = 1;
        }
        return;
    }
    double frac = total ? (double)done / (double)total : 0, el = now - st->t0;
    double rate = el > 0 ? done / el : 0, eta = rate > 0 ? (double)(total - done) / rate : 0;
    char bar[31], b1[32], b2[32], b3[32];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %5.1f%% %s / %s  %s/s  ETA %3.0fs  %-28.28s", bar, frac * 100,
            cli_human_bytes(done, b1, sizeof b1), cli_human_bytes(total, b2, sizeof b2),
            cli_human_bytes((uint64_t)rate, b3, sizeof b3), eta, what ? what : "");
    if (finished) fputc('\n', stderr), st->ended = 1;
}
