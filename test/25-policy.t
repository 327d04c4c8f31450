#!/usr/bin/python3
"""Policy (issue 3, SPEC "What msa does to a message" and "Sender rights"),
checked on the exact bytes in the spool: Date, Message-ID, From, To fix-ups,
bare addresses qualified, Bcc removed, Received prepended (login, TLS,
client address unless hide_client_ip), From/Sender rules with reject and
add-sender, header validation, everything else byte for byte, and a 20 MB
message with a bounded peak RSS."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(150)
ALICE = ("alice", "alice-pw")
DAVE = ("dave@other.example", "dave-pw")
USERS = {"alice": "alice-pw", "dave@other.example": "dave-pw"}
SENDERS = {"alice": ["alice+*@example.org", "@family.example"]}

m = t.Msa(users=USERS, senders=SENDERS)
m2 = t.Msa(users=USERS, senders=SENDERS,
           policy={"from_mismatch": "add-sender", "remove_bcc": False,
                   "hide_client_ip": True})

DATE_RE = (r"\A(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?\d{1,2} "
           r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
           r"\d\d:\d\d(?::\d\d)? [+-]\d{4}(?: \(.*\))?\Z")


def submit(head, body=b"Body line.\r\n", daemon=m, login=ALICE,
           sender="alice@example.org", rcpts=("bob@example.net",)):
    """Queue head (str, \\n line ends) + body; (final reply, Message|None)."""
    data = t.crlf(head.rstrip("\n") + "\n\n") + body
    rep = daemon.submit(login, sender, list(rcpts), data)
    qid = t.queue_id(rep) if rep.code == 250 else None
    return rep, (daemon.message(qid) if qid else None)


def hv(msg, name):
    return msg.header(name) if msg else []


def queued_nothing(daemon, before):
    return set(daemon.queued()) == before


# -- fix-ups -------------------------------------------------------------------
rep, q = submit("From: alice@example.org\nTo: bob@example.net\nSubject: bare\n")
t.is_(rep.code, 250, "a message without Date and Message-ID is queued")
dates, ids = hv(q, "Date"), hv(q, "Message-ID")
t.is_(len(dates), 1, "one Date is added")
t.like(dates[0] if dates else "", DATE_RE, "the added Date has RFC 5322 "
       "syntax")
t.is_(len(ids), 1, "one Message-ID is added")
t.like(ids[0] if ids else "", r"\A<[A-Za-z0-9._+=/-]{22,}@msa\.test>\Z",
       "the added Message-ID is <random (128 bits)@hostname>")
rep2, q2 = submit("From: alice@example.org\nTo: bob@example.net\n")
t.isnt(hv(q2, "Message-ID"), ids, "two messages get different Message-IDs")

rep, q = submit("From: alice@example.org\nTo: bob@example.net\n"
                "Date: Tue, 1 Jul 2025 10:00:00 +0200\n"
                "Message-ID: <given.1@client.example>\n")
t.is_(hv(q, "Date"), ["Tue, 1 Jul 2025 10:00:00 +0200"],
      "an existing Date is kept as it is, and only once")
t.is_(hv(q, "Message-ID"), ["<given.1@client.example>"],
      "an existing Message-ID is kept as it is, and only once")

rep, q = submit("To: bob@example.net\nSubject: no from\n")
t.is_(rep.code, 250, "a message without From is queued")
t.is_(hv(q, "From"), ["alice@example.org"], "a missing From is added from "
      "the envelope sender")

rep, q = submit("From: alice@example.org\nSubject: nobody\n")
t.is_(hv(q, "To"), ["undisclosed-recipients:;"], "without To, Cc or Bcc: "
      "'To: undisclosed-recipients:;' is added")
rep, q = submit("From: alice@example.org\nCc: carol@example.net\n")
t.is_(hv(q, "To"), [], "with only a Cc, no To is added")

rep, q = submit("From: alice\nTo: bob, Carol <carol>, dan@example.net\n"
                "Cc: (team) erin\nReply-To: support\nSubject: bare names\n")
t.is_(rep.code, 250, "bare addresses in From (alice) pass the sender check")
t.is_(hv(q, "From"), ["alice@example.org"], "From: alice -> "
      "alice@example.org")
to = hv(q, "To")[0] if hv(q, "To") else ""
t.like(to, r"\bbob@example\.org\b", "To: bob -> bob@example.org")
t.like(to, r"Carol <carol@example\.org>", "To: Carol <carol> keeps the "
       "display name: Carol <carol@example.org>")
t.like(to, r"dan@example\.net", "a qualified address is left alone")
t.like(hv(q, "Cc")[0] if hv(q, "Cc") else "", r"\(team\) erin@example\.org",
       "Cc: (team) erin keeps the comment: (team) erin@example.org")
t.is_(hv(q, "Reply-To"), ["support@example.org"],
      "Reply-To: support -> support@example.org")

rep, q = submit("From: alice@example.org\nTo: bob@example.net\n"
                "Bcc: secret@example.net\nSubject: bcc\n",
                rcpts=("bob@example.net", "secret@example.net"))
t.is_(rep.code, 250, "a message with Bcc is queued")
t.is_(hv(q, "Bcc"), [], "Bcc is removed (remove_bcc: true)")
t.unlike(q.head if q else b"", r"secret@example\.net",
         "the Bcc address is nowhere in the header")
t.like(q.env if q else b"", r"secret@example\.net", "the Bcc recipient "
       "stays in the envelope")

# Received: prepended, naming the login, TLS and the client.
rec = hv(q, "Received")
t.ok(q and q.data.startswith(b"Received:"), "Received is the first header "
     "field")
t.like(rec[0] if rec else "", r"\balice\b", "Received names the login")
t.like(rec[0] if rec else "", r"TLSv1\.[23]", "Received names the TLS "
       "version")
t.like(rec[0] if rec else "", r"127\.0\.0\.1", "Received has the client "
       "address")
t.like(rec[0] if rec else "", r"\bmsa\.test\b", "Received names this host")
t.like(rec[0] if rec else "", r";\s*\S.*\d{4} \d\d:\d\d", "Received ends "
       "with a date")

# Everything else byte for byte.
head = (b"From: Alice Example <alice@example.org>\r\n"
        b"To: bob@example.net\r\n"
        b"Date: Tue, 1 Jul 2025 10:00:00 +0200\r\n"
        b"Message-ID: <bytes.1@client.example>\r\n"
        b"Subject:   spaced   subject  \r\n"
        b"X-Folded: part one\r\n\tpart two\r\n   part three\r\n"
        b"Subject-Encoded: =?UTF-8?B?w6l0w6k=?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n")
body = (b"8-bit: \xc3\xa9t\xc3\xa9 \xff\xfe\r\n" + b"y" * 998 + b"\r\n" +
        b"\r\n\r\ntrailing blank lines above\r\n \t \r\n")
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
               head + b"\r\n" + body)
q = m.message(t.queue_id(rep)) if rep.code == 250 else None
t.is_(rep.code, 250, "a message with every header set is queued")
if q:
    rec_end = q.data.find(b"\r\nFrom: ")
    t.is_(q.data[rec_end + 2:] if rec_end >= 0 else q.data, head +
          b"\r\n" + body, "apart from Received, the message is stored byte "
          "for byte (header order, spacing, folding, 8-bit body, a "
          "998-octet line)")

# -- sender rights and From -------------------------------------------------------
for sender, code, what in (
        ("alice@EXAMPLE.ORG", 250, "the domain is case-insensitive"),
        ("Alice@example.org", 553, "the local part is exact"),
        ("alice+tag@example.org", 250, "'alice+*@example.org' matches"),
        ("alicex@example.org", 553, "'alice+*' does not match alicex"),
        ("x@family.example", 250, "'@family.example' matches any local "
         "part")):
    rep = m.submit(ALICE, sender, ["bob@example.net"], t.make_message(
        frm=sender))
    t.is_(rep.code, code, "MAIL FROM:<%s>: %d (%s)" % (sender, code, what))
rep = m.submit(DAVE, "dave@other.example", ["bob@example.net"],
               t.make_message(frm="dave@other.example"))
t.is_(rep.code, 250, "a login that is an address may send as itself")
rep = m.submit(DAVE, "dave@example.org", ["bob@example.net"],
               t.make_message(frm="dave@example.org"))
t.is_(rep.code, 553, "... but not as login@domain")

before = set(m.queued())
rep, q = submit("From: mallory@evil.example\nTo: bob@example.net\n")
t.is_(rep.code, 553, "From not one of the login's addresses: 553")
t.is_(rep.enh, "5.7.1", "... enhanced code 5.7.1")
t.like(rep.text, r"mallory@evil\.example", "... the reply names the address")
t.ok(queued_nothing(m, before), "... and nothing is queued")

rep, q = submit('From: "Alice" <alice+news@example.org>\nTo: bob@example.net\n')
t.is_(rep.code, 250, "From with a display name and a pattern address: 250")
t.is_(hv(q, "Sender"), [], "... no Sender added")

rep, q = submit("From: alice@example.org, bob@example.org\nTo: x@example.net\n")
t.is_(rep.code, 250, "From with two addresses, one the login's: 250")
t.is_(hv(q, "Sender"), ["alice@example.org"], "a From with several "
      "addresses gets Sender: the login's address")

rep, q = submit("From: alice@example.org, bob@example.org\n"
                "Sender: alice+x@example.org\nTo: x@example.net\n")
t.is_(hv(q, "Sender"), ["alice+x@example.org"], "an existing Sender that "
      "is the login's is kept")

before = set(m.queued())
rep, q = submit("From: alice@example.org\nSender: bob@example.org\n"
                "To: x@example.net\n")
t.is_(rep.code, 553, "a Sender that is not the login's: 553")
t.ok(queued_nothing(m, before), "... and nothing is queued")

before = set(m.queued())
rep, q = submit("From: mallory@evil.example\nTo: x@example.net\n", sender="")
t.is_(rep.code, 553, "the null sender with someone else's From: 553")
t.ok(queued_nothing(m, before), "... and nothing is queued")

# add-sender (m2)
rep, q = submit("From: someone@else.example\nTo: bob@example.net\n",
                daemon=m2)
t.is_(rep.code, 250, "add-sender: a foreign From is queued")
t.is_(hv(q, "Sender"), ["alice@example.org"], "add-sender: Sender: the "
      "login's address is added")
t.is_(hv(q, "From"), ["someone@else.example"], "add-sender: From is kept")
rep, q = submit("From: someone@else.example\nSender: other@else.example\n"
                "To: bob@example.net\n", daemon=m2)
t.is_(hv(q, "Sender"), ["alice@example.org"], "add-sender: a foreign "
      "Sender is replaced by the login's address")

# remove_bcc false, hide_client_ip true (m2)
rep, q = submit("From: alice@example.org\nTo: bob@example.net\n"
                "Bcc: secret@example.net\n", daemon=m2)
t.is_(hv(q, "Bcc"), ["secret@example.net"], "remove_bcc: false keeps Bcc")
rec = hv(q, "Received")
t.like(rec[0] if rec else "", r"\balice\b", "hide_client_ip: Received still "
       "names the login")
t.unlike(rec[0] if rec else "127.0.0.1", r"127\.0\.0\.1",
         "hide_client_ip: Received has no client address")

# -- header validation -------------------------------------------------------------
for what, head in (
        ("a NUL in a header field", "From: alice@example.org\n"
         "To: bob@example.net\nSubject: a\0b\n"),
        ("more than 1000 header fields", "From: alice@example.org\n"
         "To: bob@example.net\n" + "X-Many: v\n" * 1100),
        ("a header section over 256 KiB", "From: alice@example.org\n"
         "To: bob@example.net\n" + ("X-Big: " + "b" * 900 + "\n") * 300),
        ("a header field without a name", "From: alice@example.org\n"
         ": no name\n"),
        ("a continuation line first", " folded first\n"
         "From: alice@example.org\n")):
    before = set(m.queued())
    rep, q = submit(head)
    t.is_(rep.code, 554, "%s: 554" % what)
    t.is_(rep.enh, "5.6.0", "%s: enhanced code 5.6.0" % what)
    t.ok(queued_nothing(m, before), "%s: nothing is queued" % what)

# -- a 20 MB message, bounded memory ------------------------------------------------
baseline = {p: t.proc_status(p).get("VmHWM") for p in m.all_pids()}
r = m.session(login=ALICE)
before_pids = set(m.all_pids())
line = b"0123456789" * 7 + b"abcdef\r\n"  # 78 octets
body = line * (20 * 1024 * 1024 // len(line))
reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                          t.make_message(body=body))
peaks = {}
for p in m.all_pids():  # the session is still there (no QUIT yet)
    kb = t.proc_status(p).get("VmHWM", "0 kB").split()[0]
    peaks[p] = (t.proc_comm(p), int(kb))
r.cmd("QUIT")
r.close()
t.is_(reps[-1].code, 250, "a 20 MB message is queued")
qid = t.queue_id(reps[-1])
if qid:
    stored = m.message(qid)
    t.ok(stored.body == body, "the 20 MB body is stored byte for byte")
worst = max(peaks.values(), key=lambda x: x[1]) if peaks else ("?", 0)
t.note("peak RSS per process (kB): %s" % sorted(peaks.values()))
if os.environ.get("MSATEST_SANITIZER"):
    # ASan's shadow memory and quarantine say nothing about msa's buffers.
    t.skip("peak RSS is measured on the release build, not under ASan")
else:
    t.cmp_ok(worst[1], "<", 16 * 1024, "no msa process peaked above 16 MB "
             "while taking a 20 MB message (worst: %s)" % worst[0])

t.done_testing()
