#!/usr/bin/python3
"""Big messages (issue 3): a 20 MB message is accepted and lands intact
while no msa process ever holds more than a few MB of it (the body streams
to the queue file; only the header section is buffered), and a message over
limits.message_size is refused 552 5.3.4 - at MAIL when SIZE= says so, at
the end of data otherwise - with nothing queued."""

import base64
import hashlib
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(60)

ALICE = ("alice", "alice-pw")
MB = 1024 * 1024
BIG = 20 * MB
RSS_GROWTH_MAX = 8 * MB     # per process, over its own baseline
RSS_ABS_MAX = BIG // 2      # per process, absolute (half the message)

m = t.Msa(users={"alice": "alice-pw"}, limits={"message_size": "25M"})
small = t.Msa(users={"alice": "alice-pw"}, limits={"message_size": "1M"})


# ---------------------------------------------------------------------------
# Helpers


def kib(status, key):
    """A /proc/PID/status memory value in bytes (None if absent)."""
    v = status.get(key, "")
    parts = v.split()
    if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
        return int(parts[0]) * 1024
    return None


class MemWatch:
    """Sample VmHWM (peak RSS) of every process of a daemon - parent,
    children, sessions, relay workers - from a background thread."""

    def __init__(self, daemon, interval=0.01):
        self.daemon = daemon
        self.interval = interval
        self.first = {}   # pid -> (comm, VmHWM when first seen)
        self.peak = {}    # pid -> highest VmHWM seen
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        for pid in self.daemon.all_pids():
            st = t.proc_status(pid)
            hwm = kib(st, "VmHWM")
            if hwm is None:
                continue
            if pid not in self.first:
                self.first[pid] = (st.get("Name", "?"), hwm)
            self.peak[pid] = max(self.peak.get(pid, 0), hwm)

    def _run(self):
        while not self.stop_ev.is_set():
            self.sample()
            time.sleep(self.interval)

    def start(self):
        self.sample()
        self.thread.start()

    def stop(self):
        self.stop_ev.set()
        self.thread.join(5)
        self.sample()

    def report(self):
        return ["pid %d (%s): VmHWM %.1f MB at first sight, peak %.1f MB" % (
            p, self.first[p][0], self.first[p][1] / MB, self.peak[p] / MB)
            for p in sorted(self.peak)]


def start_data(r, sender="alice@example.org", rcpt="bob@example.net",
               params=""):
    """MAIL, RCPT, DATA: None once DATA got 354, else the bad reply."""
    for cmd, want in (("MAIL FROM:<%s>%s" % (sender, params), 250),
                      ("RCPT TO:<%s>" % rcpt, 250), ("DATA", 354)):
        rep = r.cmd(cmd)
        if rep.code != want:
            return rep
    return None


def big_body(size):
    """About size bytes of CRLF lines: base64 text, 8-bit lines, lines
    that start with a dot (so dot-stuffing is exercised too)."""
    rnd = random.Random(20)
    raw = rnd.randbytes(size * 3 // 4)
    b64 = base64.encodebytes(raw).replace(b"\n", b"\r\n")
    parts, pos, n = [], 0, 0
    while pos < len(b64) and sum(map(len, parts)) < size:
        step = 78 * 997
        parts.append(b64[pos:pos + step])
        pos += step
        n += 1
        parts.append(b".dot line %d\r\n" % n if n % 2 else
                     bytes(range(0x80, 0x100)) + b"\r\n")
    body = b"".join(parts)
    return body[:body.rfind(b"\r\n", 0, size) + 2]


def tmp_size(daemon):
    total = 0
    for f in daemon.tmp_files():
        try:
            total += os.path.getsize(os.path.join(daemon.spool, "tmp", f))
        except OSError:
            pass
    return total


# ---------------------------------------------------------------------------
# 1. A 20 MB message

head = t.crlf("From: alice@example.org\nTo: bob@example.net\n"
              "Subject: twenty megabytes\nMIME-Version: 1.0\n"
              "Content-Type: application/octet-stream\n"
              "Content-Transfer-Encoding: base64\n")
body = big_body(BIG)
t.note("body: %d bytes" % len(body))
wire = t.dot_stuff(head + b"\r\n" + body) + b".\r\n"
half = len(wire) // 2

r = m.session(login=ALICE)
bad = start_data(r, params=" SIZE=%d BODY=8BITMIME" % (len(head) + 2 +
                                                        len(body)))
t.ok(bad is None, "MAIL with SIZE=20M (under the 25M limit), RCPT and DATA "
     "are accepted")
sessions = m.sessions()
t.is_(len(sessions), 1, "one session process serves the transfer")
watch = MemWatch(m)
watch.start()

at_half = threading.Event()
go_on = threading.Event()
sent = {"error": None}


def send_all():
    try:
        r.sock.sendall(wire[:half])
        at_half.set()
        go_on.wait(20)
        r.sock.sendall(wire[half:])
    except OSError as e:
        sent["error"] = e
        at_half.set()


sender = threading.Thread(target=send_all, daemon=True)
t0 = time.monotonic()
sender.start()
at_half.wait(30)
# Half of the message is on its way: the queue file must be filling up
# while the client is still sending (the body streams to disk).
streamed = t.wait_for(lambda: tmp_size(m) >= half * 0.75, 15)
t.ok(streamed, "half-way through the transfer, the spool's tmp file "
     "already holds most of the first half (the body streams to disk)")
t.note("tmp file at half-way: %.1f MB" % (tmp_size(m) / MB))
go_on.set()
sender.join(40)
t.ok(not sender.is_alive() and sent["error"] is None,
     "the client sends all 20 MB without the server stalling or closing")
rep = r.reply(timeout=30)
took = time.monotonic() - t0
watch.sample()   # the session process is still there: its peak is final
t.is_(rep.code, 250, "the 20 MB message is accepted: 250")
t.note("transfer and commit: %.1f s" % took)
t.is_(r.cmd("QUIT").code, 221, "QUIT after the big message: 221")
r.close()
time.sleep(0.5)  # a relay worker may start for it: watch it too
watch.stop()

qid = t.queue_id(rep)
if qid:
    q = m.message(qid)
    t.is_(hashlib.sha256(q.body).hexdigest(),
          hashlib.sha256(body).hexdigest(),
          "the spooled body has the SHA-256 of the body sent (20 MB, 8-bit "
          "and dot lines included)")
    t.is_(len(q.body), len(body), "the spooled body is exactly as long as "
          "the body sent")
    t.ok(q.head.startswith(b"Received: ") and q.head.find(head) > 0,
         "the header fields sent are all there, in order, after the "
         "Received field")
else:
    t.fail("the spooled body has the SHA-256 of the body sent", str(rep))

t.note(*watch.report())
t.ok(sessions and sessions[0] in watch.peak, "the session process was "
     "measured")
SANITIZER = os.environ.get("MSATEST_SANITIZER", "") not in ("", "0")
for pid in sorted(watch.peak):
    if SANITIZER:
        # ASan's shadow memory and quarantine (freed buffers are kept)
        # say nothing about msa's own buffering.
        t.skip("peak RSS is measured on the release build, not under "
               "a sanitizer", 2)
        continue
    name, first = watch.first[pid]
    peak = watch.peak[pid]
    what = "session" if pid in sessions else name
    if not t.cmp_ok(peak - first, "<", RSS_GROWTH_MAX,
                    "msa process %d (%s): peak RSS grows by less than "
                    "%d MB during the 20 MB transfer" % (
                        pid, what, RSS_GROWTH_MAX // MB)):
        t.diag("VmHWM %d -> %d bytes" % (first, peak))
    t.cmp_ok(peak, "<", RSS_ABS_MAX, "msa process %d (%s): peak RSS stays "
             "below %d MB" % (pid, what, RSS_ABS_MAX // MB))

# ---------------------------------------------------------------------------
# 2. Over limits.message_size (1M on this daemon)

LIMIT = MB


def message_of(size, subject="size"):
    """A message of exactly size octets (CRLF lines, no dot lines)."""
    h = t.crlf("From: alice@example.org\nTo: bob@example.net\n"
               "Subject: %s\n\n" % subject)
    line = b"x" * 98 + b"\r\n"
    n = size - len(h)
    b = line * (n // 100)
    rest = n - len(b)
    if rest:
        b += b"y" * (rest - 2) + b"\r\n" if rest >= 2 else b""
        if rest == 1:   # one octet more: lengthen the last line
            b = b[:-2] + b"z\r\n"
    return h + b


def over_limit(r, data, what, params=""):
    """Send data in session r; check 552 5.3.4 after the end of data."""
    before = set(small.queue_files())
    bad = start_data(r, params=params)
    if bad is not None:
        t.fail("%s: MAIL, RCPT and DATA accepted" % what, str(bad))
        return
    r.sock.sendall(t.dot_stuff(data))
    early = r.pending(0.5)
    r.sock.sendall(b".\r\n")
    rep = r.reply(timeout=20)
    t.is_(early, b"", "%s: no reply while the data is still coming (the "
          "client may finish sending)" % what)
    t.is_(rep.code, 552, "%s: 552 at the end of data" % what)
    t.is_(rep.enh, "5.3.4", "%s: enhanced status code 5.3.4" % what)
    t.is_(r.pending(0.3), b"", "%s: exactly one reply" % what)
    t.is_(r.cmd("NOOP").code, 250, "%s: the session goes on (NOOP 250)" %
          what)
    t.is_(set(small.queue_files()), before, "%s: nothing is queued" % what)
    t.ok(t.wait_for(lambda: small.tmp_files() == [], 3),
         "%s: no partial file is left in spool/tmp" % what)


r = small.session(login=ALICE)
exact = message_of(LIMIT, "exactly the limit")
t.is_(len(exact), LIMIT, "(the test builds a message of exactly 1M octets)")
bad = start_data(r, params=" SIZE=%d" % LIMIT)
if bad is None:
    r.sock.sendall(t.dot_stuff(exact) + b".\r\n")
    rep = r.reply(timeout=20)
else:
    rep = bad
t.is_(rep.code, 250, "a message of exactly message_size octets (1M, SIZE= "
      "included) is accepted")
over_limit(r, message_of(LIMIT + 1, "one octet over"),
           "a message one octet over message_size, no SIZE=")
over_limit(r, message_of(3 * MB, "three megabytes"),
           "a 3 MB message, no SIZE= given")
over_limit(r, message_of(3 * MB, "lying size"),
           "a 3 MB message announced as SIZE=1000", params=" SIZE=1000")

before = set(small.queue_files())
rep = r.cmd("MAIL FROM:<alice@example.org> SIZE=%d" % (3 * MB))
t.is_(rep.code, 552, "MAIL with SIZE= over message_size: 552 at once")
t.is_(rep.enh, "5.3.4", "MAIL with SIZE= over the limit: enhanced code "
      "5.3.4")
t.is_(r.cmd("RCPT TO:<bob@example.net>").code, 503, "... and no "
      "transaction is open after it (RCPT: 503)")
t.is_(set(small.queue_files()), before, "... and nothing is queued")
r.cmd("QUIT")
r.close()

t.like(small.log(), r"(?m)^.*(?<![\w\[])552\b.*$",
       "the size rejections are logged")

t.done_testing()
