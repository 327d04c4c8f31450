#!/usr/bin/python3
"""What msa does to a message (SPEC "What msa does to a message", issue 3),
checked on the exact bytes that land in <spool>/queue/ID.data: every fix-up
(Received, Date, Message-ID, From, To, qualification of bare addresses, Bcc
removal), every rejection (553 5.7.1 for From/Sender, 554 5.6.0 for a
header section that is not RFC 5322), add-sender, and that everything else
- existing header fields, the body with 8-bit bytes, long lines and
dot-stuffed lines - passes through byte for byte."""

import email.utils
import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(60)

ALICE = ("alice", "alice-pw")
ALICE_ADDR = "alice@example.org"
SENDERS = {"alice": ["alice+*@example.org"]}

# The daemon's local time: a fixed offset that needs no zoneinfo file (the
# sessions run in an empty chroot) and has minutes, so a Date written in
# UTC, or with a wrong offset, shows.  POSIX TZ signs are inverted:
# "MSA-5:30" is UTC+05:30.
TZ, TZ_OFFSET, TZ_SECONDS = "MSA-5:30", "+0530", 5 * 3600 + 30 * 60
_old_tz = os.environ.get("TZ")
os.environ["TZ"] = TZ
# m: the defaults (from_mismatch: reject, remove_bcc: true,
# hide_client_ip: false).  m2: the other way round.
m = t.Msa(users={"alice": "alice-pw", "bob": "bob-pw"}, senders=SENDERS)
m2 = t.Msa(users={"alice": "alice-pw"}, senders=SENDERS,
           policy={"from_mismatch": "add-sender", "remove_bcc": False,
                   "hide_client_ip": True})
if _old_tz is None:
    del os.environ["TZ"]
else:
    os.environ["TZ"] = _old_tz

DATE_RE = (r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([1-9]|[12][0-9]|3[01]) "
           r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
           r"[0-9]{4} [0-2][0-9]:[0-5][0-9]:[0-6][0-9] [+-][0-9]{4}")
MSGID_RE = r"<[0-9a-fA-F]{32}@msa\.test>"


# ---------------------------------------------------------------------------
# Helpers


class Sent:
    """One submission: the final reply, the queued message (or None), the
    TLS version and cipher the client negotiated, the new queue ids."""

    def __init__(self, reply, msg, tls, new):
        self.reply, self.msg, self.tls, self.new = reply, msg, tls, new

    @property
    def data(self):
        return self.msg.data if self.msg and self.msg.data else b""


def transaction(r, sender, rcpts, data, params=""):
    """MAIL (with params), RCPT..., DATA, the dot-stuffed data and '.':
    the final reply, or the first reply that was not the expected one."""
    rep = r.cmd("MAIL FROM:<%s>%s" % (sender, params))
    if rep.code != 250:
        return rep
    for rcpt in rcpts:
        rep = r.cmd("RCPT TO:<%s>" % rcpt)
        if rep.code != 250:
            return rep
    rep = r.cmd("DATA")
    if rep.code != 354:
        return rep
    r.send(t.dot_stuff(data) + b".\r\n")
    return r.reply(timeout=20)


def submit(data, daemon=None, sender=ALICE_ADDR, rcpts=("bob@example.net",),
           params="", kind="starttls", context=None):
    """A whole submission as alice in a fresh session."""
    daemon = daemon or m
    before = set(daemon.queued())
    r = daemon.session(login=ALICE, kind=kind, context=context)
    tls = (r.sock.version(), r.sock.cipher()[0])
    try:
        rep = transaction(r, sender, rcpts, data, params)
        r.cmd("QUIT", timeout=3)
    finally:
        r.close()
    qid = t.queue_id(rep) if rep.code == 250 else None
    msg = daemon.message(qid) if qid else None
    return Sent(rep, msg, tls, set(daemon.queued()) - before)


def lines(head):
    return re.findall(rb"[^\n]*\n", head)


def fields(head):
    """The raw fields (continuation lines and CRLFs included) of a header
    section, without the empty line that ends it."""
    out = []
    for ln in lines(head):
        if ln in (b"\r\n", b"\n"):
            break
        if ln[:1] in (b" ", b"\t") and out:
            out[-1] += ln
        else:
            out.append(ln)
    return out


def fname(field):
    return field.split(b":", 1)[0].strip().lower()


def unfold(field):
    return re.sub(rb"\r\n[ \t]", b" ", field).rstrip(b"\r\n")


def spool_parts(data):
    """(Received field, the other fields, body) of spooled bytes."""
    head, body = t.split_message(data)
    fl = fields(head)
    if fl and fname(fl[0]) == b"received":
        return fl[0], fl[1:], body
    return b"", fl, body


def added_fields(data, original_head):
    """Fields msa added: those after Received that are not, in order, the
    fields of the original header section (which must all be there)."""
    _, got, _ = spool_parts(data)
    want = fields(original_head)
    out, i = [], 0
    for f in got:
        if i < len(want) and f == want[i]:
            i += 1
        else:
            out.append(f)
    return out, i == len(want)


def one(fl, name):
    """The only field called name in the list, or None."""
    found = [f for f in fl if fname(f) == name.lower().encode()]
    return found[0] if len(found) == 1 else None


def expect_queued(s, what):
    """A submission should be queued; report the reply if not."""
    if not t.ok(s.reply.code == 250 and s.msg is not None and s.msg.data,
                "%s: queued (250)" % what):
        t.diag("reply: %s" % s.reply)
        return False
    return True


def expect_rejected(daemon, data, code, enh, text_re, what,
                    sender=ALICE_ADDR):
    """Send data in a session that then goes on: the reply, that nothing
    of it is in the spool, and that the session still works."""
    before_q = set(daemon.queue_files())
    r = daemon.session(login=ALICE)
    try:
        rep = transaction(r, sender, ["bob@example.net"], data)
        t.is_(rep.code, code, "%s: refused with %d" % (what, code))
        t.is_(rep.enh, enh, "%s: enhanced status code %s" % (what, enh))
        if text_re:
            t.like(rep.text, text_re, "%s: the reply says why (%s)" % (
                what, text_re))
        t.is_(r.cmd("NOOP").code, 250, "%s: the session goes on (NOOP 250)"
              % what)
    finally:
        r.close()
    t.is_(set(daemon.queue_files()), before_q,
          "%s: nothing is queued" % what)
    t.ok(t.wait_for(lambda: daemon.tmp_files() == [], 3),
         "%s: no partial file is left in spool/tmp" % what)
    return rep


# ---------------------------------------------------------------------------
# 1. A message with nothing but a Subject: every field is added

orig_head = t.crlf("Subject: nothing but a subject\n")
body = t.crlf("Hello.\n")
start = time.time()
s = submit(orig_head + b"\r\n" + body)
if expect_queued(s, "a message with only a Subject"):
    recv, rest, got_body = spool_parts(s.data)
    t.ok(s.data.startswith(b"Received: "), "the spooled message starts "
         "with the Received field msa prepends")
    added, kept = added_fields(s.data, orig_head)
    t.ok(kept, "the Subject field is kept byte for byte, in place")
    names = sorted(fname(f).decode() for f in added)
    t.is_(names, ["date", "from", "message-id", "to"], "exactly Date, From, "
          "Message-ID and To are added to it")
    t.is_(one(added, "From"), b"From: alice@example.org\r\n",
          "the added From is the envelope sender: "
          "'From: alice@example.org'")
    t.is_(one(added, "To"), b"To: undisclosed-recipients:;\r\n",
          "with no To, Cc or Bcc: 'To: undisclosed-recipients:;' is added")
    date = one(added, "Date") or b""
    t.like(date, r"^Date: " + DATE_RE + r"\r\n\Z",
           "the added Date is an RFC 5322 date-time "
           "('Date: Sun, 29 Nov 2026 18:31:22 +0100')")
    try:
        dt = email.utils.parsedate_to_datetime(
            unfold(date).split(b":", 1)[1].strip().decode())
        when = dt.timestamp()
        offset = dt.utcoffset().total_seconds()
    except (TypeError, ValueError, IndexError, AttributeError):
        when, offset = 0, None
    t.ok(start - 5 <= when <= time.time() + 5, "the added Date is the "
         "time of the submission")
    t.is_(offset, TZ_SECONDS, "the added Date carries the daemon's local "
          "offset (TZ=%s: %s)" % (TZ, TZ_OFFSET))
    if date:
        day = date.split(b",")[0][6:]
        t.is_(day.decode(), time.strftime(
            "%a", time.gmtime(when + TZ_SECONDS)),
            "the Date's day name matches its date")
    mid = one(added, "Message-ID") or b""
    t.like(mid, r"^Message-I[Dd]: " + MSGID_RE + r"\r\n\Z",
           "the added Message-ID is <32 hex digits@hostname>")
    t.is_(got_body, body, "the body follows the empty line unchanged")
    t.like(m.log(), r"fix.*(Date|Message-ID)|(Date|Message-ID).*fix",
           "the fix-ups are logged")
    s2 = submit(orig_head + b"\r\n" + body)
    if expect_queued(s2, "the same message again"):
        a2, _ = added_fields(s2.data, orig_head)
        t.isnt(one(a2, "Message-ID"), mid, "each message gets its own "
               "Message-ID")

    # -- Received -------------------------------------------------------------
    rv = unfold(recv).decode("utf-8", "replace")
    t.note(rv)
    t.like(rv, r"\balice\b", "Received names the authenticated login")
    t.like(rv, r"\b127\.0\.0\.1\b", "Received names the client address "
           "(hide_client_ip: false)")
    t.like(rv, r"\bby msa\.test\b", "Received says 'by <hostname>'")
    t.like(rv, r"\bwith ESMTPSA\b", "Received says 'with ESMTPSA' (TLS and "
           "AUTH, RFC 3848)")
    t.like(rv, re.escape(s.tls[0]), "Received names the TLS version the "
           "client negotiated (%s)" % s.tls[0])
    t.like(rv, re.escape(s.tls[1]), "Received names the cipher (%s)" %
           s.tls[1])
    t.like(recv, r"; " + DATE_RE + r"\r\n\Z", "Received ends with '; ' "
           "and the date")
    t.ok(all(len(ln) <= 1000 for ln in lines(recv)) and
         all(ln[:1] in (b" ", b"\t") for ln in lines(recv)[1:]),
         "Received is folded with white space, no line over 998 octets")

# Received over TLS 1.2 (implicit TLS on 465).
ctx12 = t.client_context(max_version=ssl.TLSVersion.TLSv1_2)
s = submit(t.make_message(subject="tls 1.2"), kind="implicit", context=ctx12)
if expect_queued(s, "a message over implicit TLS 1.2"):
    rv = unfold(spool_parts(s.data)[0]).decode("utf-8", "replace")
    t.like(rv, r"TLSv1\.2", "Received names TLSv1.2 for a TLS 1.2 client")
    t.like(rv, re.escape(s.tls[1]), "Received names the TLS 1.2 cipher "
           "(%s)" % s.tls[1])

# hide_client_ip: true (m2)
s = submit(t.make_message(subject="hidden"), daemon=m2)
if expect_queued(s, "a message with hide_client_ip: true"):
    rv = unfold(spool_parts(s.data)[0]).decode("utf-8", "replace")
    t.unlike(rv, r"127\.0\.0\.1", "hide_client_ip: Received does not "
             "name the client address")
    t.unlike(s.data, r"127\.0\.0\.1", "hide_client_ip: the client "
             "address is nowhere in the message")
    t.like(rv, r"\balice\b", "hide_client_ip: Received still names the "
           "login")
    t.like(rv, re.escape(s.tls[0]), "hide_client_ip: Received still names "
           "the TLS version")

# A mail client that greets with its own address literal, as Thunderbird
# does ("EHLO [192.168.1.23]"): with hide_client_ip the address must not
# come back through the HELO name either.
r = m2.raw()
steps = [r.reply().code, r.ehlo("[127.0.0.1]").code, r.cmd("STARTTLS").code]
r.starttls()
steps += [r.ehlo("[127.0.0.1]").code, r.auth_plain(*ALICE).code]
rep = transaction(r, ALICE_ADDR, ["bob@example.net"],
                  t.make_message(subject="helo literal"))
r.close()
t.is_(steps + [rep.code], [220, 250, 220, 250, 235, 250], "a client that "
      "says 'EHLO [127.0.0.1]' submits a message")
if rep.code == 250:
    rv = unfold(spool_parts(m2.message(t.queue_id(rep)).data)[0])
    t.note(rv.decode("utf-8", "replace"))
    t.unlike(rv, r"127\.0\.0\.1", "hide_client_ip: after 'EHLO "
             "[127.0.0.1]' Received does not name the client address "
             "either")

# ---------------------------------------------------------------------------
# 2. Existing fields pass through byte for byte

head = (b"Return-Path: <ignored@example.net>\r\n"
        b"Received: from older.example (older.example [192.0.2.1])\r\n"
        b"\tby relay.example with ESMTP; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
        b"From: =?UTF-8?Q?Al=C3=AFce_Ex=C3=A4mple?= <alice@example.org>\r\n"
        b"To: \"Bob, the builder\" <bob@example.net>,\r\n"
        b"   carol@example.com (Carol)\r\n"
        b"subject:   lots   of   space   \r\n"
        b"Date: 1 Jan 2026 00:00 -0000\r\n"
        b"Message-Id: <already.there@client.example>\r\n"
        b"X-Tab:\tvalue\twith\ttabs\r\n"
        b"X-Empty:\r\n"
        b"X-Folded: first\r\n \r\n\t  second\r\n"
        b"X-UTF8: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa8\r\n"
        b"X-Long: " + b"L" * (998 - 8) + b"\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain;\r\n charset=\"utf-8\"\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n")
body = b"Body.\r\n"
s = submit(head + b"\r\n" + body, params=" BODY=8BITMIME")
if expect_queued(s, "a message with every field already right"):
    recv = spool_parts(s.data)[0]
    t.is_(s.data[len(recv):], head + b"\r\n" + body,
          "after the new Received, the message is exactly what was sent "
          "(odd spacing, folding, encoded words, 8-bit, a 998-octet field "
          "line, an older Received)")
    t.is_(len([f for f in spool_parts(s.data)[1]
               if fname(f) in (b"date", b"message-id")]), 2,
          "an existing Date and Message-ID are not duplicated")

# ---------------------------------------------------------------------------
# 3. Bare addresses are qualified with the domain, nothing else changes

head = (b"From: Alice Example <alice> (the boss)\r\n"
        b"Reply-To: \"Doe, John\" <john>, support (help desk)\r\n"
        b"To: bob,\r\n\tCarol Q <carol>,\r\n dave@example.net\r\n"
        b"Cc: Team: eve, frank@example.net;, (nobody) grace\r\n"
        b"X-Not-An-Address-Field: henry\r\n"
        b"Subject: qualify bob and carol\r\n"
        b"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <qualify@client.example>\r\n")
want = (b"From: Alice Example <alice@example.org> (the boss)\r\n"
        b"Reply-To: \"Doe, John\" <john@example.org>, "
        b"support@example.org (help desk)\r\n"
        b"To: bob@example.org,\r\n\tCarol Q <carol@example.org>,\r\n"
        b" dave@example.net\r\n"
        b"Cc: Team: eve@example.org, frank@example.net;, (nobody) "
        b"grace@example.org\r\n"
        b"X-Not-An-Address-Field: henry\r\n"
        b"Subject: qualify bob and carol\r\n"
        b"Date: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <qualify@client.example>\r\n")
body = t.crlf("To: zed\nFrom: bare\n\nlook-alike fields in the body.\n")
s = submit(head + b"\r\n" + body)
if expect_queued(s, "a message with bare addresses"):
    recv, got, got_body = spool_parts(s.data)
    for w, g in zip(fields(want), got):
        t.is_(g, w, "qualified: %s" % w.split(b":")[0].decode())
    t.is_(len(got), len(fields(want)), "no field added or dropped while "
          "qualifying")
    t.is_(s.data[len(recv):], want + b"\r\n" + body,
          "bare addresses in From, Reply-To, To and Cc gain @example.org; "
          "display names, quotes, comments, groups and folding are kept")
    t.like(m.log(), r"(?i)qualif", "the qualification is logged")

head = (b"from: Alice <alice>\r\n"
        b"to: <bob>, =?UTF-8?Q?B=C3=B6b?= <bob2>\r\n"
        b"CC: carol\r\n"
        b"BCC: hidden\r\n"
        b"date: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        b"message-id: <lower@client.example>\r\n"
        b"subject: field names in other cases\r\n")
want = (b"from: Alice <alice@example.org>\r\n"
        b"to: <bob@example.org>, =?UTF-8?Q?B=C3=B6b?= <bob2@example.org>\r\n"
        b"CC: carol@example.org\r\n"
        b"date: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        b"message-id: <lower@client.example>\r\n"
        b"subject: field names in other cases\r\n")
s = submit(head + b"\r\nx\r\n",
           rcpts=("bob@example.org", "hidden@example.org"))
if expect_queued(s, "a message with lower- and upper-case field names"):
    recv = spool_parts(s.data)[0]
    t.is_(s.data[len(recv):], want + b"\r\nx\r\n", "field names are "
          "matched in any case: 'from:', 'to:', 'CC:' qualified, 'BCC:' "
          "removed, 'date:' and 'message-id:' not added again")

s = submit(t.crlf("From: alice\nSender: (me) alice\nTo: bob@example.net\n"
                  "Subject: bare sender\n\nx\n"))
if expect_queued(s, "a message with a bare From and Sender"):
    _, got, _ = spool_parts(s.data)
    t.is_(one(got, "From"), b"From: alice@example.org\r\n",
          "a bare From 'alice' becomes 'alice@example.org'")
    t.is_(one(got, "Sender"), b"Sender: (me) alice@example.org\r\n",
          "a bare Sender is qualified, its comment kept")

# ---------------------------------------------------------------------------
# 4. From added from the envelope sender

s = submit(t.crlf("To: bob@example.net\nSubject: no from\n\nx\n"),
           sender="alice+news@example.org")
if expect_queued(s, "a message without From (MAIL FROM alice+news)"):
    t.is_(one(spool_parts(s.data)[1], "From"),
          b"From: alice+news@example.org\r\n",
          "a missing From is the envelope sender "
          "('From: alice+news@example.org')")
    t.is_(one(spool_parts(s.data)[1], "To"), b"To: bob@example.net\r\n",
          "an existing To is kept and no undisclosed-recipients To added")

s = submit(t.crlf("To: bob@example.net\nSubject: read receipt\n\nx\n"),
           sender="")
if expect_queued(s, "a message from <> without From"):
    t.is_(one(spool_parts(s.data)[1], "From"),
          b"From: alice@example.org\r\n",
          "from the null sender, a missing From is the login's address")

s = submit(t.crlf("From: alice@example.org\nCc: carol@example.com\n"
                  "Subject: only cc\n\nx\n"))
if expect_queued(s, "a message with Cc but no To"):
    t.is_([f for f in spool_parts(s.data)[1] if fname(f) == b"to"], [],
          "a message with a Cc gets no 'To: undisclosed-recipients:;'")

# ---------------------------------------------------------------------------
# 5. Bcc

head = (b"From: alice@example.org\r\nTo: bob@example.net\r\n"
        b"Bcc: secret@example.net,\r\n\thidden@example.com\r\n"
        b"Subject: bcc\r\nDate: Sun, 29 Nov 2026 12:00:00 +0000\r\n"
        b"Message-ID: <bcc@client.example>\r\n")
body = t.crlf("bcc body\n")
rcpts = ("bob@example.net", "secret@example.net", "hidden@example.com")
s = submit(head + b"\r\n" + body, rcpts=rcpts)
if expect_queued(s, "a message with a folded Bcc"):
    recv, got, got_body = spool_parts(s.data)
    t.ok(all(fname(f) != b"bcc" for f in got), "remove_bcc: the Bcc field "
         "is gone from the spooled message")
    t.unlike(s.data, r"secret|hidden", "remove_bcc: not even its "
             "continuation line is left")
    t.is_(s.data[len(recv):], head.replace(
        b"Bcc: secret@example.net,\r\n\thidden@example.com\r\n", b"") +
        b"\r\n" + body, "remove_bcc: the rest is unchanged")
    t.like(s.msg.env, r"secret@example\.net", "the Bcc recipients are still "
           "in the envelope")
    t.like(m.log(), r"(?i)bcc", "the removal of Bcc is logged")
s = submit(head + b"\r\n" + body, rcpts=rcpts, daemon=m2)
if expect_queued(s, "a folded Bcc with remove_bcc: false"):
    recv = spool_parts(s.data)[0]
    t.is_(s.data[len(recv):], head + b"\r\n" + body,
          "remove_bcc: false: the Bcc field is kept byte for byte")

# ---------------------------------------------------------------------------
# 6. From and Sender against the login's rights

# From not allowed: 553 5.7.1 (from_mismatch: reject).
msg = t.crlf("From: Mallory <mallory@example.com>\nTo: bob@example.net\n"
             "Subject: forged\n\nx\n")
mark = m.log_size()
expect_rejected(m, msg, 553, "5.7.1", r"mallory@example\.com",
                "From: mallory@example.com as alice")
CODE553 = r"(?<![\w\[])553\b"   # not a pid ("msa[5530]") or a port
t.like(m.log()[mark:], r"(?m)^.*%s.*$" % CODE553,
       "the From rejection is logged")
logline = [ln for ln in m.log()[mark:].splitlines()
           if re.search(CODE553, ln)]
t.ok(logline and "alice" in logline[0] and "127.0.0.1" in logline[0],
     "the rejection's log line names the login and the client")
expect_rejected(m, t.crlf("From: bob@example.org, carol@example.org\n"
                          "Subject: x\n\nx\n"), 553, "5.7.1", None,
                "a From of two other people as alice")
expect_rejected(m, t.crlf("From: alice@example.org\nSender: "
                          "bob@example.org\nSubject: x\n\nx\n"), 553,
                "5.7.1", r"bob@example\.org",
                "a Sender that is not alice's (bob@example.org)")

expect_rejected(m, t.crlf("From: mallory@example.com\nSender: "
                          "alice@example.org\nSubject: x\n\nx\n"), 553,
                "5.7.1", r"mallory@example\.com",
                "a foreign From with alice's own Sender (from_mismatch: "
                "reject)")

# Several authors: Sender added.
head = t.crlf("From: alice@example.org, Bob <bob@example.org>\n"
              "To: team@example.net\nSubject: two authors\n"
              "Date: Sun, 29 Nov 2026 12:00:00 +0000\n"
              "Message-ID: <two@client.example>\n")
s = submit(head + b"\r\n" + b"x\r\n")
if expect_queued(s, "a From with two addresses, one alice's"):
    added, kept = added_fields(s.data, head)
    t.ok(kept, "two authors: the original fields are kept")
    t.is_(added, [b"Sender: alice@example.org\r\n"], "two authors and no "
          "Sender: 'Sender: alice@example.org' is added (RFC 5322 3.6.2)")
head = t.crlf("From: alice@example.org, Bob <bob@example.org>\n"
              "Sender: Alice <alice+work@example.org>\n"
              "To: team@example.net\nSubject: two authors\n"
              "Date: Sun, 29 Nov 2026 12:00:00 +0000\n"
              "Message-ID: <two2@client.example>\n")
s = submit(head + b"\r\n" + b"x\r\n")
if expect_queued(s, "two authors and alice's own Sender"):
    recv = spool_parts(s.data)[0]
    t.is_(s.data[len(recv):], head + b"\r\nx\r\n", "two authors with a "
          "Sender of alice's: nothing added or changed")

# from_mismatch: add-sender (m2)
head = t.crlf("From: Mallory <mallory@example.com>\nTo: bob@example.net\n"
              "Subject: on behalf\nDate: Sun, 29 Nov 2026 12:00:00 +0000\n"
              "Message-ID: <behalf@client.example>\n")
s = submit(head + b"\r\n" + b"x\r\n", daemon=m2)
if expect_queued(s, "add-sender: From mallory@example.com as alice"):
    added, kept = added_fields(s.data, head)
    t.ok(kept, "add-sender: the foreign From is kept byte for byte")
    t.is_(added, [b"Sender: alice@example.org\r\n"], "add-sender: "
          "'Sender: alice@example.org' is added")
head = t.crlf("From: Mallory <mallory@example.com>\n"
              "Sender: mallory@example.com\nTo: bob@example.net\n"
              "Subject: forged sender\n"
              "Date: Sun, 29 Nov 2026 12:00:00 +0000\n"
              "Message-ID: <fsender@client.example>\n")
s = submit(head + b"\r\n" + b"x\r\n", daemon=m2)
if expect_queued(s, "add-sender: a foreign Sender"):
    got = spool_parts(s.data)[1]
    t.is_([f for f in got if fname(f) == b"sender"],
          [b"Sender: alice@example.org\r\n"],
          "add-sender: a foreign Sender is replaced by alice's address "
          "(one Sender field)")
    t.is_([f for f in got if fname(f) != b"sender"],
          [f for f in fields(head) if fname(f) != b"sender"],
          "add-sender: the other fields are unchanged")
head = t.crlf("From: Mallory <mallory@example.com>\n"
              "Sender: alice@example.org\nTo: bob@example.net\n"
              "Subject: on behalf, said so\n"
              "Date: Sun, 29 Nov 2026 12:00:00 +0000\n"
              "Message-ID: <osender@client.example>\n")
s = submit(head + b"\r\n" + b"x\r\n", daemon=m2)
if expect_queued(s, "add-sender: a foreign From with alice's own Sender"):
    recv = spool_parts(s.data)[0]
    t.is_(s.data[len(recv):], head + b"\r\nx\r\n", "add-sender: a foreign "
          "From that already has alice's Sender is left as it is")
s = submit(t.crlf("From: bob@example.org, carol@example.org\n"
                  "Subject: x\n\nx\n"), daemon=m2)
if expect_queued(s, "add-sender: two foreign authors"):
    t.is_([f for f in spool_parts(s.data)[1] if fname(f) == b"sender"],
          [b"Sender: alice@example.org\r\n"],
          "add-sender: two foreign authors get 'Sender: alice@example.org'")

# ---------------------------------------------------------------------------
# 7. A header section that is not RFC 5322: 554 5.6.0

BAD = [
    ("a header that starts with a continuation line",
     b" folded first\r\nFrom: alice@example.org\r\nSubject: x\r\n"),
    ("a field name with a space ('X Bad: 1')",
     b"From: alice@example.org\r\nX Bad: 1\r\nSubject: x\r\n"),
    ("a header line without a colon",
     b"From: alice@example.org\r\nNo colon here\r\nSubject: x\r\n"),
    ("a NUL in a header field",
     b"From: alice@example.org\r\nSubject: a\x00b\r\n"),
    ("10000 header fields",
     b"From: alice@example.org\r\n" +
     b"".join(b"X-F: %d\r\n" % i for i in range(10000))),
    ("a 300 KiB header section",
     b"From: alice@example.org\r\nX-Big: start\r\n" +
     b" 123456789012345678901234567890123456789012345678901234567890\r\n"
     * 5000),
]
for what, head in BAD:
    expect_rejected(m, head + b"\r\nbody\r\n", 554, "5.6.0", None, what)

# ---------------------------------------------------------------------------
# 8. The body, byte for byte

eight = bytes(b for b in range(1, 256) if b not in (10, 13))
body = (b"plain ASCII line\r\n"
        b"all octets but NUL, CR and LF: " + eight + b"\r\n"
        b"UTF-8: gr\xc3\xbc\xc3\x9fe, \xe6\x97\xa5\xe6\x9c\xac, "
        b"\xf0\x9f\x98\x80; Latin-1: \xe9\xe8\xff\r\n" +
        (b"\xc3\xa9" * 499) + b"\r\n" +            # 998 octets, 8-bit
        b"." + b"d" * 997 + b"\r\n"                # 998 with a dot first
        b"   leading and trailing white space \t \r\n"
        b"\r\n\r\n"
        b".\r\n"
        b"..\r\n"
        b"...\r\n"
        b".hidden dot line\r\n"
        b" .space first\r\n"
        b"a.\r\n"
        b"From looks like mbox\r\n"
        b"\r\n"
        b".")
body += b"\r\n"
head = t.crlf("From: alice@example.org\nTo: bob@example.net\n"
              "Subject: bytes\nDate: Sun, 29 Nov 2026 12:00:00 +0000\n"
              "Message-ID: <bytes@client.example>\nMIME-Version: 1.0\n"
              "Content-Type: text/plain; charset=x-unknown\n"
              "Content-Transfer-Encoding: 8bit\n")
wire = t.dot_stuff(head + b"\r\n" + body)
t.ok(b"\r\n..\r\n" in wire and b"\r\n..hidden dot line\r\n" in wire and
     b"\r\n..d" in wire, "(the test sends the dot lines dot-stuffed)")
s = submit(head + b"\r\n" + body, params=" BODY=8BITMIME")
if expect_queued(s, "a body with 8-bit octets, dots and 998-octet lines"):
    recv = spool_parts(s.data)[0]
    t.is_(s.msg.body, body, "the body is stored byte for byte: every "
          "8-bit octet, 998-octet lines, white space, and dot-stuffed "
          "lines with exactly one dot removed")
    t.is_(s.data[len(recv):], head + b"\r\n" + body, "the whole message "
          "after Received is exactly what was sent")

# A message with an empty header section (it starts with the empty line).
s = submit(b"\r\nonly a body\r\n")
if expect_queued(s, "a message that starts with the empty line"):
    added, kept = added_fields(s.data, b"")
    t.is_(sorted(fname(f).decode() for f in added),
          ["date", "from", "message-id", "to"], "an empty header section "
          "gets Date, From, Message-ID and To after Received")
    t.is_(s.msg.body, b"only a body\r\n", "... and the body is unchanged")

# A message without a body at all (the data ends after the header).
s = submit(t.crlf("From: alice@example.org\nTo: bob@example.net\n"
                  "Subject: header only\n"))
if expect_queued(s, "a message with no body"):
    t.is_(s.msg.body, b"", "a message without a body is stored without one")
    t.like(s.data, r"(?m)^Subject: header only\r$", "... with its fields")

t.done_testing()
