#!/usr/bin/python3
"""Garbage in: thousands of malformed command lines, NUL bytes, 100 KB
lines without CRLF, 10,000 header fields in one message (554 5.6.0,
nothing queued), invalid UTF-8 in headers, random bytes and truncated
ClientHellos on the implicit-TLS port, and TLS garbage after STARTTLS.
After each kind the daemon still serves (a new client gets the banner and
a clean message is queued), and no msa process died: the parent logs no
child-died, the listener no session-died (a session killed by a signal)
and no session-killed."""

import os
import random
import socket
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
ALICE = ("alice", "alice-pw")
seed = int(os.environ.get("MSATEST_SEED", "0")) or random.randrange(1 << 30)
rng = random.Random(seed)
t.note("seed %d (MSATEST_SEED to replay)" % seed)
m = t.Msa(users={"alice": "alice-pw"},
          limits={"sessions": 50, "sessions_per_ip": 50})
children = sorted(m.children())
queued = set()


def still_serving(after):
    """A banner for a new client, a clean message queued, nobody died."""
    r = None
    try:
        r = m.raw()
        banner = r.reply(timeout=10)
    except (OSError, ssl.SSLError) as e:
        banner = e
    finally:
        if r:
            r.close()
    t.is_(getattr(banner, "code", banner), 220, "after %s a new client gets "
          "the banner" % after)
    good, rep = m.submit_retry(ALICE, "alice@example.org",
                               ["bob@example.net"],
                               t.make_message(subject="clean after " + after),
                               timeout=15)
    if t.ok(good, "after %s a clean message is queued (%s)" % (after, rep)):
        queued.add(t.queue_id(rep))
    log = m.log()
    died = [ln for ln in log.splitlines()
            if "event=child-died" in ln or "event=session-died" in ln
            or "event=session-killed" in ln]
    t.is_(died, [], "after %s no msa process died" % after)
    t.is_(sorted(m.children()), children, "after %s the parent's children "
          "are the same processes" % after)


def quiet_close(r):
    try:
        r.close()
    except Exception:
        pass


# -- 1. thousands of malformed command lines ---------------------------------------
VERBS = [b"MAIL", b"RCPT", b"DATA", b"EHLO", b"HELO", b"AUTH", b"STARTTLS",
         b"BDAT", b"VRFY", b"EXPN", b"ETRN", b"XCLIENT", b"RSET", b"QUIT"]


def garbage_line():
    kind = rng.randrange(10)
    if kind == 0:  # random bytes, no line ends inside
        line = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1,
                                                                       200)))
        line = line.replace(b"\n", b"?")
    elif kind == 1:  # a verb with a broken argument
        line = rng.choice(VERBS) + rng.choice(
            [b" FROM:<<<>>>", b" TO:", b" TO:<@@>", b" FROM:<a@b> SIZE=-1",
             b" FROM:<a@b> SIZE=99999999999999999999999", b" =", b" *",
             b" PLAIN ====", b" LOGIN \xff\xfe", b" :", b"\t\t\t",
             b" FROM:<" + b"a" * 300 + b"@b>", b" " + b"%" * 500])
    elif kind == 2:  # NUL bytes
        line = b"EHLO a\0b" if rng.random() < 0.5 else \
            b"\0" * rng.randrange(1, 50)
    elif kind == 3:  # bare CR inside
        line = b"NOOP\rMAIL FROM:<x@y>"
    elif kind == 4:  # long verb
        line = b"X" * rng.randrange(100, 3000)
    elif kind == 5:  # invalid UTF-8 and high bytes
        line = b"EHLO \xc0\xaf\xed\xa0\x80\xf8\x88\x80\x80\x80"
    elif kind == 6:  # commands out of order
        line = rng.choice([b"DATA", b"RCPT TO:<a@b>", b"AUTH PLAIN AGFsaWNl",
                           b"MAIL FROM:<alice@example.org>", b"BDAT 10 LAST"])
    elif kind == 7:  # lower case, spaces, tabs
        line = b"  mAiL   fRoM : < alice@example.org >  "
    elif kind == 8:  # format strings and escapes
        line = b"EHLO %s%s%s%n%x%p \x1b[2J"
    else:
        line = b"HELO " + bytes(rng.randrange(33, 127) for _ in range(
            rng.randrange(1, 900)))
    return line + (b"\r\n" if rng.random() < 0.9 else b"\n")


odd = []
stats = {"lines": 0, "replies": 0, "sessions": 0, "bad_replies": 0}
slock = threading.Lock()


def malformed_session():
    lines = [garbage_line() for _ in range(rng.randrange(5, 25))]
    began = time.monotonic()
    try:
        r = m.raw(timeout=10)
    except OSError:
        return
    try:
        if r.reply().code != 220:
            return
        if rng.random() < 0.5:
            r.ehlo()
        r.send(b"".join(lines))
        got = bad = 0
        while True:
            rep = r.reply(timeout=10)
            if rep.code is None:
                break
            got += 1
            if not 200 <= rep.code <= 599 or rep.code in (235, 354):
                bad += 1
                with slock:
                    odd.append(str(rep))
            # After 220 to a STARTTLS the rest is TLS garbage to the
            # server: it answers with an alert or waits for a record.
            if rep.code in (421, 221, 220) or got >= len(lines):
                break
        with slock:
            stats["lines"] += len(lines)
            stats["replies"] += got
            stats["bad_replies"] += bad
            stats["sessions"] += 1
    except (OSError, ssl.SSLError):
        with slock:
            stats["lines"] += len(lines)
            stats["sessions"] += 1
    finally:
        quiet_close(r)
        if time.monotonic() - began > 3:
            with slock:
                slow_sessions.append(b"|".join(lines)[:300])


slow_sessions = []


def run_sessions(fn, n, threads=4):
    def worker(k):
        for _ in range(k):
            fn()
    ths = [threading.Thread(target=worker, args=(n // threads,), daemon=True)
           for _ in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(60)


t0 = time.monotonic()
run_sessions(malformed_session, 480)
t.note("malformed: %d lines in %d sessions, %d replies, %.1fs" % (
    stats["lines"], stats["sessions"], stats["replies"],
    time.monotonic() - t0))
for ln in slow_sessions[:5]:
    t.note("slow: %r" % ln)
t.cmp_ok(stats["lines"], ">=", 5000, "thousands of malformed command lines "
         "were sent")
if not t.is_(stats["bad_replies"], 0, "every reply was a well-formed SMTP reply (and none let an "
                 "unauthenticated client in: no 235, no 354)"):
    t.diag("unexpected replies: %s" % "; ".join(sorted(set(odd))[:20]))
still_serving("malformed command lines")

# -- 2. NUL bytes, overlong lines ---------------------------------------------------
r = m.session(login=ALICE)
rep = r.cmd(b"NOOP\0\0\0")
t.like(str(rep), r"^50\d ", "a command with NUL bytes gets a 5xx (%s)" % rep)
r.send(b"A" * 100 * 1024 + b"\r\n")
rep = r.reply()
t.like(str(rep), r"^500 5\.5\.2 ", "a 100 KB command line gets 500 5.5.2 "
       "(%s)" % rep)
t.is_(r.cmd("NOOP").code, 250, "the session goes on after it")
reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                          t.make_message(subject="nul in header",
                                         extra="X-Nul: a\0b\n"))
t.like(str(reps[-1]), r"^554 5\.6\.0 ", "NUL in a header field: 554 5.6.0 "
       "(%s)" % reps[-1])
reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                          t.make_message(subject="long line",
                                         body="x" * 100 * 1024 + "\n"))
t.like(str(reps[-1]), r"^554 5\.6\.0 ", "a 100 KB line in DATA: 554 5.6.0 "
       "(%s)" % reps[-1])
t.is_(r.cmd("NOOP").code, 250, "the session goes on")
r.close()
# 100 KB without any line end, then the client just goes away.
s = m.raw()
s.reply()
s.send(b"B" * 100 * 1024)
s.close()
# And an AUTH response far over 12288 octets.
r = m.session()
rep = r.cmd(b"AUTH PLAIN " + b"A" * 20000)
t.like(str(rep), r"^5\d\d ", "an AUTH line of 20,000 octets gets a 5xx "
       "(%s)" % rep)
r.close()
still_serving("NUL bytes and overlong lines")

# -- 3. 10,000 header fields ----------------------------------------------------------
before = set(m.queued())
fields = "".join("X-Field-%05d: value %d\n" % (i, i) for i in range(10000))
r = m.session(login=ALICE)
reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                          t.make_message(subject="many fields", extra=fields))
t.like(str(reps[-1]), r"^554 5\.6\.0 ", "10,000 header fields: 554 5.6.0 "
       "(%s)" % reps[-1])
t.is_(r.cmd("NOOP").code, 250, "the session goes on")
r.close()
t.is_(sorted(set(m.queued()) - before), [], "nothing was queued")
t.ok(t.wait_for(lambda: not m.tmp_files(), 5), "and tmp/ is empty")
still_serving("10,000 header fields")

# -- 4. invalid UTF-8 in headers ------------------------------------------------------
bad_utf8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
            b"\xe2\x82", b"caf\xe9"]
outcomes = []
for i, seq in enumerate(bad_utf8):
    head = (b"From: Al\xc3\xadce " + seq + b" <alice@example.org>\r\n"
            b"To: b" + seq + b" <bob@example.net>\r\n"
            b"Subject: bad " + seq + (b" utf-8 %d\r\n" % i) +
            b"X-Bytes: " + seq + b"\r\n\r\n")
    msg = head + b"body " + seq + b"\r\n"
    r = m.session(login=ALICE)
    rep = r.mail_transaction("alice@example.org", ["bob@example.net"],
                             msg)[-1]
    outcomes.append(rep.code)
    if rep.code == 250:
        q = m.message(t.queue_id(rep))
        t.ok(q.data is not None and (b"X-Bytes: " + seq + b"\r\n") in q.data,
             "invalid UTF-8 %r is accepted and kept byte for byte" % seq)
        queued.add(q.id)
    else:
        t.like(str(rep), r"^5\d\d 5\.\d\.\d+ ", "invalid UTF-8 %r is "
               "rejected with a 5xx (%s)" % (seq, rep))
    t.is_(r.cmd("NOOP").code, 250, "the session goes on after it")
    r.close()
t.note("invalid UTF-8 in headers: replies %s" % outcomes)
still_serving("invalid UTF-8 in headers")


# -- 5. the implicit-TLS port: random bytes and truncated ClientHellos ---------------
def client_hello():
    ctx = t.client_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


HELLO = client_hello()
t.cmp_ok(len(HELLO), ">", 100, "a real ClientHello to cut (%d bytes)" %
         len(HELLO))


def implicit_garbage():
    kind = rng.randrange(4)
    if kind == 0:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1,
                                                                     4096)))
    elif kind == 1:
        data = HELLO[:rng.randrange(1, len(HELLO))]
    elif kind == 2:  # a whole hello with a corrupted byte
        b = bytearray(HELLO)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        data = bytes(b)
    else:  # plain SMTP on the TLS port
        data = b"EHLO x\r\nMAIL FROM:<a@b>\r\n"
    try:
        sk = socket.create_connection((t.HOST, m.port["implicit"]), 5)
    except OSError:
        return 0
    try:
        sk.sendall(data)
        if rng.random() < 0.5:
            sk.shutdown(socket.SHUT_WR)
            sk.settimeout(5)
            try:
                while sk.recv(4096):
                    pass
            except OSError:
                pass
    except OSError:
        pass
    finally:
        sk.close()
    return 1


n_impl = [0]


def one_implicit():
    done = implicit_garbage()
    with slock:
        n_impl[0] += done


run_sessions(one_implicit, 400)
t.note("implicit-TLS port: %d garbage connections" % n_impl[0])
t.cmp_ok(n_impl[0], ">=", 300, "the implicit port took the garbage "
         "connections")
still_serving("garbage on the implicit-TLS port")
r = m.raw("implicit")
t.is_(r.reply().code, 220, "a real TLS client on the implicit port gets "
      "the banner")
r.close()


# -- 6. TLS garbage after STARTTLS ----------------------------------------------------
def starttls_garbage():
    try:
        r = m.raw(timeout=5)
    except OSError:
        return
    try:
        r.reply()
        r.ehlo()
        if r.cmd("STARTTLS").code != 220:
            return
        kind = rng.randrange(3)
        if kind == 0:
            data = bytes(rng.randrange(256) for _ in range(
                rng.randrange(1, 2048)))
        elif kind == 1:
            data = HELLO[:rng.randrange(1, len(HELLO))]
        else:  # a hello, then records of nonsense
            data = HELLO + b"\x17\x03\x03\x00\x10" + bytes(16) * 4
        r.send(data)
        r.sock.shutdown(socket.SHUT_WR)
        r.pending(1)
    except (OSError, ssl.SSLError):
        pass
    finally:
        quiet_close(r)


run_sessions(starttls_garbage, 160)
still_serving("TLS garbage after STARTTLS")

# -- the end --------------------------------------------------------------------------
t.ok(all(q in m.queued() for q in queued), "every clean message is still "
     "queued (%d)" % len(queued))
t.ok(m.wait_sessions(0, timeout=15), "every garbage session has ended")
t.is_(m.stop(), 0, "msa stops cleanly")
t.done_testing()
