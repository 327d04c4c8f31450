#!/usr/bin/python3
"""SMTP smuggling: DATA ends only at CRLF.CRLF.  Each vector (<LF>.<LF>,
<CR>.<CR>, <LF>.<CR><LF>, <CR><LF>.<LF>, <CR><LF>.<CR>) followed by an
embedded MAIL/RCPT/DATA never yields a second message: the whole message is
rejected (554 5.6.0 or 5.5.x) after the real end of data, nothing is queued,
and the session serves the next message.  Also: bare CR/LF elsewhere, the
998-octet line limit, dot-unstuffing."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)
ALICE = ("alice", "alice-pw")
m = t.Msa(users={"alice": "alice-pw"})

VECTORS = [
    ("<LF>.<LF>", b"\n.\n"),
    ("<CR>.<CR>", b"\r.\r"),
    ("<LF>.<CR><LF>", b"\n.\r\n"),
    ("<CR><LF>.<LF>", b"\r\n.\n"),
    ("<CR><LF>.<CR>", b"\r\n.\r"),
]

SMUGGLED = (b"MAIL FROM:<alice@example.org>\r\n"
            b"RCPT TO:<victim@example.net>\r\n"
            b"DATA\r\n"
            b"From: alice@example.org\r\nTo: victim@example.net\r\n"
            b"Subject: SMUGGLED\r\n\r\nsmuggled body\r\n")


def rejected(rep):
    return rep.code is not None and rep.cls == 5 and (
        rep.enh == "5.6.0" or (rep.enh or "").startswith("5.5."))


def clean_message(r, label):
    """Send a clean message in session r: (reply, qid, body)."""
    body = t.crlf("clean message after %s\n" % label)
    reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                              t.make_message(subject="clean", body=body))
    return reps[-1], t.queue_id(reps[-1]), body


def send_raw_data(r, payload):
    """MAIL/RCPT/DATA, then payload exactly as given (it must carry its own
    end of data); returns the replies after DATA's 354 (None if refused)."""
    for cmd, want in (("MAIL FROM:<alice@example.org>", 250),
                      ("RCPT TO:<bob@example.net>", 250), ("DATA", 354)):
        rep = r.cmd(cmd)
        if rep.code != want:
            return None, rep
    r.send(payload)
    return r.reply(), None


for name, vec in VECTORS:
    before = set(m.queued())
    r = m.session(login=ALICE)
    payload = (b"From: alice@example.org\r\nTo: bob@example.net\r\n"
               b"Subject: vector\r\n\r\nfirst part" + vec + SMUGGLED +
               b"\r\n.\r\n")
    rep, refused = send_raw_data(r, payload)
    if refused is not None:
        t.fail("%s: the transaction starts" % name, str(refused))
        r.close()
        continue
    if not t.ok(rejected(rep), "%s: the message is rejected (5xx 5.6.0 or "
                "5.5.x) at the real end of data" % name):
        t.diag("reply: %s" % rep)
    extra = r.pending(1.0)
    t.is_(extra, b"", "%s: no further replies (the embedded MAIL/RCPT/DATA "
          "were not run)" % name)
    t.is_(set(m.queued()), before, "%s: nothing is queued" % name)
    t.unlike(m.spool_bytes(), r"SMUGGLED|smuggled body",
             "%s: no trace of the smuggled message in the spool" % name)
    t.is_(r.cmd("NOOP").code, 250, "%s: the session goes on (NOOP 250)" %
          name)
    rep, qid, body = clean_message(r, name)
    t.is_(rep.code, 250, "%s: the next clean message in the session is "
          "queued" % name)
    new = set(m.queued()) - before
    t.is_(new, {qid} if qid else set(), "%s: exactly one message queued in "
          "all" % name)
    if qid:
        t.is_(m.message(qid).body, body, "%s: the clean message's body is "
              "intact" % name)
    r.close()

# -- bare CR and LF elsewhere ---------------------------------------------------
OTHER = [
    ("a bare LF inside a body line", b"Subject: x\r\n\r\nabc\ndef\r\n"),
    ("a bare CR inside a body line", b"Subject: x\r\n\r\nabc\rdef\r\n"),
    ("a bare LF in the header section",
     b"Subject: x\nX-Other: y\r\n\r\nbody\r\n"),
    ("a bare CR before the final CRLF", b"Subject: x\r\n\r\nbody\r\r\n"),
    ("a bare LF line end before the final dot", b"Subject: x\r\n\r\nbody\n"),
]
for name, msg in OTHER:
    before = set(m.queued())
    r = m.session(login=ALICE)
    payload = b"From: alice@example.org\r\nTo: bob@example.net\r\n" + msg
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    rep, refused = send_raw_data(r, payload + b".\r\n")
    if refused is not None:
        t.fail("%s: the transaction starts" % name, str(refused))
        r.close()
        continue
    if not t.ok(rejected(rep), "%s: rejected with 554 5.6.0 (or 5.5.x)" %
                name):
        t.diag("reply: %s" % rep)
    t.is_(r.pending(0.5), b"", "%s: one reply only" % name)
    t.is_(set(m.queued()), before, "%s: nothing is queued" % name)
    rep, qid, body = clean_message(r, name)
    t.is_(rep.code, 250, "%s: the session serves the next message" % name)
    r.close()

# Data that starts with <LF>.<CR><LF>: not an end of data (an empty
# message would be accepted and "more" run as a command).
r = m.session(login=ALICE)
before = set(m.queued())
rep, refused = send_raw_data(r, b"\n.\r\nmore\r\n.\r\n")
t.ok(refused is None and rejected(rep), "data that starts with <LF>.<CR><LF> "
     "is one message, rejected at the real end")
t.is_(r.pending(0.5), b"", "... with one reply only")
t.is_(set(m.queued()), before, "... and nothing is queued")
r.close()

# -- line length -----------------------------------------------------------------
r = m.session(login=ALICE)
for n, good in ((998, True), (999, False), (5000, False)):
    before = set(m.queued())
    body = b"x" * n + b"\r\n" + b"short line\r\n"
    reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                              t.make_message(subject="line %d" % n, body=body))
    if good:
        t.is_(reps[-1].code, 250, "a body line of exactly 998 octets is "
              "accepted")
        qid = t.queue_id(reps[-1])
        if qid:
            t.is_(m.message(qid).body, body, "the 998-octet line is stored "
                  "intact")
    else:
        t.is_(reps[-1].cls, 5, "a body line of %d octets is "
              "rejected (5xx)" % n)
        t.is_(set(m.queued()), before, "nothing of the %d-octet-line "
              "message is queued" % n)
before = set(m.queued())
reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                          t.make_message(extra="X-Long: " + "y" * 1200 + "\n"))
t.is_(reps[-1].cls, 5, "a header line over 998 octets is rejected")
t.is_(set(m.queued()), before, "... and nothing is queued")
t.is_(r.cmd("NOOP").code, 250, "the session goes on after long lines")
r.close()

# -- dot-unstuffing -----------------------------------------------------------------
body = (b".leading dot\r\n"
        b".\r\n"
        b"..\r\n"
        b"...three\r\n"
        b" .space dot\r\n"
        b"middle . dot and a..b\r\n"
        b"trailing dot.\r\n"
        b"\r\n"
        b".\r\n")
msg = t.make_message(subject="dots", body=body)
wire = t.dot_stuff(msg)
t.ok(b"\r\n..leading dot\r\n" in wire and b"\r\n..\r\n" in wire,
     "(the test dot-stuffs lines that start with a dot)")
r = m.session(login=ALICE)
rep, refused = send_raw_data(r, wire + b".\r\n")
t.is_(rep.code if rep else None, 250, "a dot-stuffed message is queued")
qid = t.queue_id(rep) if rep else None
if qid:
    t.is_(m.message(qid).body, body, "dot-unstuffing: the spool holds the "
          "original lines (one leading dot removed, only at line starts)")
r.close()

t.done_testing()
