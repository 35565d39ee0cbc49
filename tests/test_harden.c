/* Core hardening helpers against truths built here: a FIFO, hard links and symlinks made in a
 * temp folder, a message that wraps the previous one, and a dead writer's temp (a child killed
 * with SIGKILL after creating it). Each check fails without its fix (issue 11). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "core/mapfile.h"
#include "compress/model_regions.h"
#include <sys/resource.h>

static char g_dir[64];

static char *P(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void test_inputs(void) {
    lb_error err;
    CHECK(mkfifo(P("fifo"), 0600) == 0);
    int fd = -1;
    /* a FIFO without a writer: a plain open would block here forever */
    CHECK(lb_open_regular(P("fifo"), &fd, NULL, &err) == LB_ERR_IO && fd < 0 && strstr(err.msg, "a FIFO") &&
          strstr(err.msg, "fifo"), "%s", err.msg);
    lb_mapfile m;
    CHECK(lb_mapfile_open(P("fifo"), &m, &err) == LB_ERR_IO && strstr(err.msg, "not a regular file"));
    char *txt;
    size_t len;
    CHECK(lb_read_file(P("fifo"), 1024, &txt, &len, &err) == LB_ERR_IO);
    CHECK(lb_read_file(g_dir, 1024, &txt, &len, &err) == LB_ERR_IO && strstr(err.msg, "a directory"), "%s", err.msg);
    write_file(P("small"), "hello");
    char head[8];
    size_t got = 0;
    CHECK(lb_read_head(P("small"), head, sizeof head, &got, &err) == LB_OK && got == 5 && !memcmp(head, "hello", 5));
    CHECK(lb_read_file(P("small"), 1024, &txt, &len, &err) == LB_OK && len == 5 && !strcmp(txt, "hello"));
    free(txt);
}

static void test_outputs(void) {
    lb_error err;
    write_file(P("in.gguf"), "data");
    CHECK(link(P("in.gguf"), P("hard.gguf")) == 0);
    CHECK(symlink("in.gguf", P("sym.gguf")) == 0);
    const char *in[] = {P("in.gguf")};
    const char *same[] = {P("in.gguf"), P("hard.gguf"), P("sym.gguf"), P("./in.gguf")};
    for (int i = 0; i < 4; i++)
        CHECK(lb_output_check(same[i], in, 1, 0, &err) == LB_ERR_ARG && strstr(err.msg, "is the input"), "%s: %s", same[i], err.msg);
    CHECK(lb_output_check(P("other.gguf"), in, 1, 0, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_output_check("", in, 1, 0, &err) == LB_ERR_ARG && strstr(err.msg, "empty"));
    CHECK(lb_output_check(P("x/"), in, 1, 0, &err) == LB_ERR_ARG && strstr(err.msg, "ends in '/'"));
    CHECK(lb_output_check(g_dir, in, 1, 0, &err) == LB_ERR_ARG && strstr(err.msg, "is a folder"));
    CHECK(lb_output_check(P("missing/o.gguf"), in, 1, 0, &err) == LB_ERR_IO && strstr(err.msg, "output folder"));
    CHECK(lb_output_check("/proc/o.gguf", NULL, 0, 0, &err) == LB_ERR_IO && strstr(err.msg, "not writable"), "%s", err.msg);
    /* a folder input: a file inside it is an input; a folder output may be a folder */
    const char *folder[] = {g_dir};
    CHECK(lb_output_check(P("hard.gguf"), folder, 1, 0, &err) == LB_ERR_ARG);
    CHECK(lb_output_check(g_dir, folder, 1, LB_OUT_FOLDER, &err) == LB_ERR_ARG, "the folder itself");
    CHECK(lb_output_check(P("new/"), NULL, 0, LB_OUT_FOLDER, &err) == LB_OK, "%s", err.msg);
    CHECK(lb_atomic_open(g_dir, &(lb_atomic_file *){NULL}, &err) == LB_ERR_ARG, "the atomic writer refuses a folder");
}

static int count_temps(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c '^\\.out\\.bin\\.lowbit-tmp\\.'", g_dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p && fscanf(p, "%d", &n) != 1) n = -1;
    if (p) pclose(p);
    return n;
}

static void test_temps(void) {
    lb_error err;
    /* a writer killed mid-write leaves its temp */
    pid_t pid = fork();
    if (pid == 0) {
        lb_atomic_file *f;
        if (lb_atomic_open(P("out.bin"), &f, NULL) == LB_OK) lb_atomic_write(f, "partial", 7, NULL);
        raise(SIGKILL);
        _exit(1);
    }
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && count_temps() == 1, "the killed writer's temp is there (%d)", count_temps());
    char *name = lb_temp_name(P("out.bin"));
    CHECK(name && strstr(name, "/.out.bin.lowbit-tmp.") && strstr(name, ".XXXXXX"), "%s", name ? name : "NULL");
    free(name);
    /* a live writer's temp (this process's pid) is kept, the dead one's removed */
    char live[300];
    snprintf(live, sizeof live, "%s/.out.bin.lowbit-tmp.%ld.qwerty", g_dir, (long)getpid());
    write_file(live, "");
    lb_atomic_file *f;
    CHECK(lb_atomic_open(P("out.bin"), &f, &err) == LB_OK);
    CHECK(lb_atomic_write(f, "done", 4, &err) == LB_OK && lb_atomic_commit(f, &err) == LB_OK);
    CHECK(count_temps() == 1 && access(live, F_OK) == 0, "only the live temp is left (%d)", count_temps());
    unlink(live);
}

static void test_messages(void) {
    lb_error err;
    lb_fail(&err, LB_ERR_FORMAT, "inner: header length runs past the end (truncated?)");
    /* wrapping the previous message: the arguments alias the destination */
    lb_fail(&err, LB_ERR_CORRUPT, "%s (truncated or not a delta file?)", err.msg);
    CHECK(!strcmp(err.msg, "inner: header length runs past the end (truncated?) (truncated or not a delta file?)"), "%s", err.msg);
    lb_fail(&err, LB_ERR_FORMAT, "%s: neither (%s)", "f", err.msg);
    CHECK(!strncmp(err.msg, "f: neither (inner: header", 25), "%s", err.msg);
}

/* A .lbz with valid checksums whose original is 256 MiB of zeros: no model header, so a load
 * must refuse it before allocating the original (issue 11 finding 2). */
static void test_lbz_bomb(void) {
    lb_error err;
    FILE *f = fopen(P("zeros.bin"), "wb");
    int ok = f && ftruncate(fileno(f), (off_t)256 << 20) == 0;
    if (f) fclose(f);
    CHECK(ok);
    /* compressed in a child: reading the zeros makes them resident, which would hide the peak below */
    pid_t pid = fork();
    if (pid == 0) _exit(lb_lbz_compress(P("zeros.bin"), P("bomb.lbz"), NULL, 0, NULL, NULL, NULL, NULL) == LB_OK ? 0 : 1);
    int ws = 1;
    waitpid(pid, &ws, 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "lb_lbz_compress of the zeros");
    unlink(P("zeros.bin"));
    struct stat st;
    CHECK(stat(P("bomb.lbz"), &st) == 0 && st.st_size < (1 << 20), "the container is small");
    lb_model_regions *r = NULL;
    uint64_t orig = 0;
    CHECK(lb_lbz_restore_check(P("bomb.lbz"), &r, &orig, &err) != LB_OK && !r, "no model header: refused");
    uint64_t need = 1;
    CHECK(lb_model_load_bytes(P("bomb.lbz"), &need, &err) != LB_OK, "the budget pre-check refuses it too");
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    lb_model *m = NULL;
    CHECK(lb_model_load(P("bomb.lbz"), NULL, &m, &err) != LB_OK && !m);
    getrusage(RUSAGE_SELF, &after);
    CHECK(after.ru_maxrss - before.ru_maxrss < 64 * 1024, "the failed load raised the peak by %ld KiB",
          after.ru_maxrss - before.ru_maxrss);
    unlink(P("bomb.lbz"));
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/test_harden_XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    test_inputs();
    test_outputs();
    test_temps();
    test_messages();
    test_lbz_bomb();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    return test_summary();
}
