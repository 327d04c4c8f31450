#!/usr/bin/python3
"""Kill storm: four clients submit about 150 messages, each with a unique
token, while msa relays them to a local sink (smarthost mode) and a killer
SIGKILLs the queue process and the relay process at random moments, two
times each.  Then the killer stops, the queue is flushed until it drains,
and the sink's mail is counted: every message acknowledged with 250 is
delivered at least once; duplicates (at-least-once delivery after a kill)
stay below kills x relay concurrency.  First, on a separate msa, a
request in flight when auth or queue dies (AUTH, DATA's queue file, the
commit at the end of DATA) gets a 4xx reply at once, not a 5-minute hang,
and leaves nothing in the spool.

The parent gives up on a child restarted five times within a minute (its
crash-loop guard), and queue and relay always restart together: four
kills in all is what one minute allows."""

import os
import random
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
ALICE = ("alice", "alice-pw")
CLIENTS = 4
PER_CLIENT = 38  # 152 messages
STORM = 22.0  # seconds the stream lasts
KILLS = ["queue", "relay", "queue", "relay"]
CONCURRENCY = 4
seed = int(os.environ.get("MSATEST_SEED", "0")) or random.randrange(1 << 30)
rng = random.Random(seed)
t.note("seed %d (MSATEST_SEED to replay)" % seed)

# -- a request in flight when its process dies gets an answer at once ---------
# The session waits for the listener synchronously; if auth or queue dies
# with its request unanswered, the client must not sit through the
# session's IPC timeout (5 minutes).  The process is stopped first so the
# request is surely in its hands, then killed.
w = t.Msa(users={"alice": "alice-pw"})


def in_flight(role, before, request, want, what):
    r = w.session(login=None if role == "auth" else ALICE)
    try:
        for line in before:
            rep = r.cmd(line)
            if rep.cls not in (2, 3):
                t.fail(what, "%s: %s" % (line, rep))
                return
        pid = w.wait_role(role, 10)
        os.kill(pid, signal.SIGSTOP)
        r.send(request)
        time.sleep(0.3)
        t.kill_quietly(pid, signal.SIGKILL)
        t0 = time.monotonic()
        try:
            rep = r.reply(timeout=8)
        except OSError as e:
            rep = e
        took = time.monotonic() - t0
        code = getattr(rep, "code", None)
        if not t.ok(code is not None and code // 100 == 4 and took < 5,
                    what):
            t.diag("got %r after %.1fs (want %s)" % (rep, took, want))
    finally:
        r.close()


in_flight("auth", [], b"AUTH PLAIN " + t.plain_response(
    *ALICE).encode() + b"\r\n", "454 4.7.0",
          "AUTH in flight when auth dies: a 4xx reply within 5 s, not a "
          "hang")
in_flight("queue", ["MAIL FROM:<alice@example.org>",
                    "RCPT TO:<bob@example.net>"], b"DATA\r\n", "451 4.3.0",
          "DATA (queue file requested) when the queue dies: a 4xx reply "
          "within 5 s")
w.wait_role("queue", 10)
in_flight("queue", ["MAIL FROM:<alice@example.org>",
                    "RCPT TO:<bob@example.net>", "DATA"],
          t.dot_stuff(t.make_message(subject="in flight")) + b".\r\n",
          "451 4.3.0", "end of DATA (commit requested) when the queue dies: "
          "a 4xx reply within 5 s")
t.ok(t.wait_for(lambda: w.wait_role("queue", 10) and not w.tmp_files(), 10),
     "nothing of the unacknowledged messages is left in tmp/")
t.unlike("".join(w.queue_files()), r".", "... nor in queue/")
t.is_(w.stop(), 0, "that msa stops cleanly")

sink = t.SmtpSink()
m = t.Msa(users={"alice": "alice-pw"},
          relay={"mode": "smarthost",
                 "smarthost": {"host": "127.0.0.1", "port": sink.port,
                               "tls": "none"},
                 "retry": {"first": "1s", "max": "2s", "give_up": "1h"},
                 "concurrency": CONCURRENCY})

# -- a quiet delivery first: the pipeline works at all --------------------------
good, rep = m.submit_retry(ALICE, "alice@example.org", ["bob@example.net"],
                           t.make_message(subject="warm-up",
                                          body="token warm-up\n"))
t.ok(good, "a message is queued before the storm (%s)" % rep)
t.ok(sink.wait_received(1, 15), "... and reaches the sink")

lock = threading.Lock()
acked = {}  # token -> queue id
tried = []
errors = []
stop = threading.Event()


def client(n):
    # Spread over the storm so that the kills land among submissions.
    pause = STORM / PER_CLIENT
    for i in range(PER_CLIENT):
        start = time.monotonic()
        token = "ks-%d-%03d-%08x" % (n, i, rng.getrandbits(32))
        # Sizes up to 512 KB keep DATA and the commit in flight for a
        # while, so kills land in the middle of transactions too.
        filler = ("%s filler line\n" % token) * rng.randrange(1, 15000)
        data = t.make_message(subject="storm %s" % token,
                              body="token %s\n%s" % (token, filler))
        with lock:
            tried.append(token)
        try:
            rep = m.submit(ALICE, "alice@example.org",
                           ["rcpt%d@example.net" % n], data, timeout=10)
            if rep.code == 250:
                with lock:
                    acked[token] = t.queue_id(rep)
            else:
                with lock:
                    errors.append(str(rep))
        except Exception as e:  # refused, cut, timed out: not acked
            with lock:
                errors.append("%s: %s" % (type(e).__name__, e))
        left = pause - (time.monotonic() - start)
        if left > 0:
            time.sleep(left * rng.uniform(0.5, 1.5))


kills = []  # (role, pid, log offset)


def killer():
    order = list(KILLS)
    rng.shuffle(order)
    # Random moments, at least 3 s apart, all inside the stream.
    moments, last = [], 0.5
    for k in range(len(order)):
        room = (STORM - 2.0 - last) / (len(order) - k) - 3.0
        last += 3.0 + rng.uniform(0, max(0.0, room))
        moments.append(last)
    t0 = time.monotonic()
    for role, at in zip(order, moments):
        while time.monotonic() - t0 < at:
            if stop.wait(0.05):
                return
        pid = m.wait_role(role, 10)
        if not pid:
            continue
        mark = m.log_size()
        t.kill_quietly(pid, signal.SIGKILL)
        kills.append((role, pid, mark, round(time.monotonic() - t0, 2)))


threads = [threading.Thread(target=client, args=(n,), daemon=True)
           for n in range(CLIENTS)]
kt = threading.Thread(target=killer, daemon=True)
kt.start()
for th in threads:
    th.start()
for th in threads:
    th.join(STORM + 30)
stop.set()
kt.join(15)

t.note("kills: %s" % ", ".join("%s pid %d at %.1fs" % (r, p, at)
                               for r, p, _, at in kills))
t.is_(len(kills), len(KILLS), "the killer SIGKILLed %d processes (queue "
      "and relay two times each)" % len(KILLS))
for role, pid, mark, _ in kills:
    died = m.wait_log(r"event=child-died child=%s (\S+)" % role, 10, mark)
    t.is_(died.group(1) if died else None, "signal=9", "the parent logged "
          "the SIGKILL of %s pid %d" % (role, pid))
t.ok(m.running(), "the parent is still running after the storm")
t.unlike(m.log(), r"event=giving-up", "the parent never gave up on a child")
t.ok(m.wait_role("queue", 10) and m.wait_role("relay", 10),
     "queue and relay run again")
t.cmp_ok(len(acked), ">=", len(tried) // 2, "most submissions were "
         "acknowledged during the storm (%d of %d)" % (len(acked),
                                                       len(tried)))

# -- drain ----------------------------------------------------------------------
end = time.monotonic() + 40
while m.queued() and time.monotonic() < end:
    m.queue_cmd("flush", timeout=10)
    time.sleep(1)
left = m.queued()
if not t.is_(left, [], "the queue drains once the killer stops"):
    lst = m.queue_cmd("list")
    t.diag(lst.stdout[-3000:])
time.sleep(1)  # a worker's last transaction may still be being written

counts = {}
for rec in sink.received():
    for tok in re.findall(rb"token (ks-\d+-\d+-[0-9a-f]{8})", rec["data"]):
        tok = tok.decode()
        counts[tok] = counts.get(tok, 0) + 1
lost = sorted(tok for tok in acked if counts.get(tok, 0) == 0)
delivered = sum(1 for tok in acked if counts.get(tok, 0) > 0)
unacked_delivered = sum(1 for tok in counts if tok not in acked)
dups = sum(c - 1 for c in counts.values() if c > 1)
t.note("attempted %d, acknowledged %d, delivered %d of them, duplicates %d,"
       " lost %d; delivered without a 250 (connection cut after commit): %d;"
       " %d refusals/errors during the storm" % (
           len(tried), len(acked), delivered, dups, len(lost),
           unacked_delivered, len(errors)))
if errors:
    t.note("first refusals: %s" % "; ".join(errors[:5]))
t.is_(lost, [], "every acknowledged message reached the sink (none lost)")
t.cmp_ok(dups, "<=", len(kills) * CONCURRENCY, "duplicates stay within "
         "kills x concurrency (%d x %d)" % (len(kills), CONCURRENCY))
t.ok(all(tok in tried for tok in counts), "nothing reached the sink that "
     "was never submitted")
good, rep = m.submit_retry(ALICE, "alice@example.org", ["bob@example.net"],
                           t.make_message(subject="after"))
t.ok(good, "a submission after the storm is queued (%s)" % rep)
t.done_testing()
