"""An idle lowbit serve costs no CPU: after requests have run (the thread pool's workers, the
scheduler, the HTTP threads all woke), the process's CPU time over a few idle seconds stays near
zero, so two servers, or a server and its client, share 2 cores without spinning against each
other. Also while a second server is busy beside it (the oversubscribed case)."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import cli_serve as CS  # noqa: E402  (its Server and curl helpers; it reads the same argv)
import lbtest as T  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds of a running process, all its threads (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15


def cpu_share(srvs, seconds=3.0):
    """Each server's CPU time over the next seconds, as a share of one core."""
    t0, c0 = time.monotonic(), [cpu_seconds(s.p.pid) for s in srvs]
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return [(cpu_seconds(s.p.pid) - c) / dt for s, c in zip(srvs, c0)]


def main():
    model = T.S("models", "tinystories-512d")
    q = {"prompt": "Once upon a time", "max_tokens": 32, "temperature": 0}
    a = CS.Server(model, "-np", "4", "-t", "2", "--ctx", "256", "--lookup", "1")
    b = CS.Server(model, "-np", "4", "-t", "2", "--ctx", "256")
    try:
        for srv in (a, b):
            st, _, _ = CS.post(srv, "/v1/completions", q, auth=False, timeout=300)
            T.check(st == 200, f"a request runs first: {st}")
        time.sleep(0.5)
        share, = cpu_share([a])
        print(f"idle: {share:.2%} of a core")
        T.check(share < 0.05, f"an idle server uses {share:.1%} of a core (under 5%)")
        # b generates without pause while a idles: a must not take CPU from it
        stop = threading.Event()

        def load():
            while not stop.is_set():
                CS.post(b, "/v1/completions", dict(q, max_tokens=200), auth=False, timeout=300)

        ths = [threading.Thread(target=load, daemon=True) for _ in range(4)]  # its 4 slots busy
        for th in ths:
            th.start()
        time.sleep(0.5)
        share, busy = cpu_share([a, b])
        stop.set()
        for th in ths:
            th.join(300)
        print(f"idle beside a busy server: {share:.2%} of a core (the busy one: {busy:.0%})")
        T.check(busy > 0.05, f"the measure sees the busy server working: {busy:.0%} of a core")
        T.check(share < 0.05, f"idle beside a busy server: {share:.1%} of a core (under 5%)")
    finally:
        rcs = [a.stop(), b.stop()]
    T.check(rcs == [0, 0], f"clean exits: {rcs}")
    return T.finish()


if __name__ == "__main__":
    sys.exit(main())
