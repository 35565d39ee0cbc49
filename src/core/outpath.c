/* Output paths checked before a job starts (lb_output_check): a wrong output should cost a
 * message, not the whole job's time, and never the input itself. */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mapfile.h"

/* OUT names an existing file that is the input file, or (input folder) a file directly in it. */
static int is_input(const struct stat *o, const char *in) {
    struct stat si;
    if (stat(in, &si) != 0) return 0;
    if (si.st_dev == o->st_dev && si.st_ino == o->st_ino) return 1;
    if (!S_ISDIR(si.st_mode) || S_ISDIR(o->st_mode)) return 0;
    DIR *d = opendir(in);
    int hit = 0;
    struct dirent *de;
    while (d && !hit && (de = readdir(d))) {
        char *p = lb_path_join(in, de->d_name);
        struct stat se;
        if (p && stat(p, &se) == 0 && se.st_dev == o->st_dev && se.st_ino == o->st_ino) hit = 1;
        free(p);
    }
    if (d) closedir(d);
    return hit;
}

/* Creates and removes a file in dir: access() says nothing true for root or a read-only mount. */
static int can_create_in(const char *dir) {
    char *p = lb_path_join(dir, ".lowbit-probe.XXXXXX");
    int fd = p ? mkstemp(p) : -1, e = errno;
    if (fd >= 0) {
        close(fd);
        unlink(p);
    }
    free(p);
    errno = e;
    return fd >= 0;
}

/* The folder OUT is written in exists and this process may create files there. */
static lb_status check_folder(const char *out, lb_error *err) {
    const char *slash = strrchr(out, '/');
    char *dir = slash ? strndup(out, slash == out ? 1 : (size_t)(slash - out)) : strdup(".");
    if (!dir) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
    struct stat sd;
    lb_status s = LB_OK;
    if (stat(dir, &sd) != 0) s = lb_fail(err, LB_ERR_IO, "%s: output folder %s: %s", out, dir, strerror(errno));
    else if (!S_ISDIR(sd.st_mode)) s = lb_fail(err, LB_ERR_IO, "%s: %s is not a folder", out, dir);
    else if (!can_create_in(dir))
        s = lb_fail(err, LB_ERR_IO, "%s: output folder %s is not writable: %s", out, dir, strerror(errno));
    free(dir);
    return s;
}

lb_status lb_output_check(const char *out, const char *const *inputs, size_t n_inputs, int flags, lb_error *err) {
    if (!out || !*out) return lb_fail(err, LB_ERR_ARG, "the output path is empty");
    size_t n = strlen(out);
    if (out[n - 1] == '/' && !(flags & LB_OUT_FOLDER))
        return lb_fail(err, LB_ERR_ARG, "%s: the output path ends in '/' (name a file)", out);
    if (out[n - 1] == '/' && n > 1) { /* a folder output named "dir/": judge "dir" */
        char *t = strndup(out, n - 1);
        if (!t) return lb_fail(err, LB_ERR_NOMEM, "out of memory");
        lb_status s = lb_output_check(t, inputs, n_inputs, flags, err);
        free(t);
        return s;
    }
    struct stat so;
    int exists = stat(out, &so) == 0;
    if (exists && S_ISDIR(so.st_mode) && !(flags & LB_OUT_FOLDER))
        return lb_fail(err, LB_ERR_ARG, "%s: the output is a folder (name a file)", out);
    if (exists && !S_ISDIR(so.st_mode) && !S_ISREG(so.st_mode))
        return lb_fail(err, LB_ERR_ARG, "%s: the output exists and is not a regular file", out);
    for (size_t i = 0; exists && i < n_inputs; i++)
        if (inputs[i] && is_input(&so, inputs[i]))
            return lb_fail(err, LB_ERR_ARG, "%s: the output is the input %s (same file); writing it would destroy the input",
                           out, inputs[i]);
    if (exists && S_ISDIR(so.st_mode)) {
        if (!can_create_in(out)) return lb_fail(err, LB_ERR_IO, "%s: folder not writable: %s", out, strerror(errno));
        return LB_OK;
    }
    return check_folder(out, err);
}

/* ---- temporary files of atomic writes ---- */

/* "DIR/" (possibly empty) and ".NAME.lowbit-tmp." for OUT; NAME is cut so that the whole temp
 * name stays well under NAME_MAX. */
static int temp_parts(const char *out, char **dir, char **prefix) {
    const char *slash = strrchr(out, '/');
    const char *name = slash ? slash + 1 : out;
    size_t dl = (size_t)(name - out), nl = strlen(name) > 160 ? 160 : strlen(name);
    *dir = strndup(out, dl);
    *prefix = malloc(nl + 20);
    if (!*dir || !*prefix) {
        free(*dir);
        free(*prefix);
        return 0;
    }
    snprintf(*prefix, nl + 20, ".%.*s.lowbit-tmp.", (int)nl, name);
    return 1;
}

char *lb_temp_name(const char *out) {
    char *dir, *prefix;
    if (!temp_parts(out, &dir, &prefix)) return NULL;
    size_t n = strlen(dir) + strlen(prefix) + 32;
    char *t = malloc(n);
    /* the writer's pid is in the name, so a later run can tell a dead writer's leftovers */
    if (t) snprintf(t, n, "%s%s%ld.XXXXXX", dir, prefix, (long)getpid());
    free(dir);
    free(prefix);
    return t;
}

/* PID of a temp name "PREFIX<pid>.XXXXXX" of ours, or 0 when the name is not one. */
static long temp_pid(const char *name, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    char *end;
    long pid = strtol(name + pl, &end, 10);
    if (pid <= 0 || end == name + pl || *end != '.' || strlen(end + 1) != 6) return 0;
    return pid;
}

void lb_temp_sweep(const char *out) {
    char *dir, *prefix;
    if (!temp_parts(out, &dir, &prefix)) return;
    DIR *d = opendir(*dir ? dir : ".");
    struct dirent *de;
    while (d && (de = readdir(d))) {
        long pid = temp_pid(de->d_name, prefix);
        /* only a writer that no longer exists: a live one (even this process) may still commit */
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = lb_path_join(*dir ? dir : ".", de->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            if (unlink(p) == 0) lb_info("%s: removed %s, left by an interrupted write (pid %ld)", out, p, pid);
        }
        free(p);
    }
    if (d) closedir(d);
    free(dir);
    free(prefix);
}
