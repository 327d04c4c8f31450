#!/usr/bin/python3
"""The submission dialogue of SPEC: banner, EHLO before and after TLS, every
reply code (538, 530, 535, 553, 501 5.1.3, 452 4.5.3, 552 5.3.4, 252, ...),
AUTH PLAIN and LOGIN with and without initial response, '*' cancel,
pipelining, and '250 2.0.0 Ok: queued as ID' only once the files exist."""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(150)

ALICE = ("alice", "alice-pw")
m = t.Msa(users={"alice": "alice-pw", "bob": "bob-pw"},
          slow_users={"carol": "carol-pw"},
          limits={"recipients": 3, "message_size": "10K"},
          senders={"alice": ["alice+*@example.org", "@family.example"]})


def ehlo_keywords(reply):
    return {ln.split()[0].upper(): ln for ln in reply.lines[1:] if ln}


# -- banner and EHLO before TLS ----------------------------------------------
r = m.raw()
banner = r.reply()
t.is_(banner.code, 220, "the banner is a 220 reply")
t.like(banner.raw, r"\A220 msa\.test ESMTP msa\b",
       "the banner reads '220 <hostname> ESMTP msa'")
e = r.ehlo()
t.is_(e.code, 250, "EHLO is answered 250")
t.like(e.lines[0], r"^msa\.test\b", "EHLO's first line names the hostname")
kw = ehlo_keywords(e)
for word in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES",
             "STARTTLS"):
    t.ok(word in kw, "EHLO before TLS lists %s" % word)
t.ok("AUTH" not in kw, "EHLO before TLS does not list AUTH")
size = kw.get("SIZE", "").split()
t.ok(len(size) == 2 and size[1] in ("10240", "10000"),
     "SIZE advertises limits.message_size (10K)")
if not (len(size) == 2 and size[1] in ("10240", "10000")):
    t.diag("SIZE line: %r" % kw.get("SIZE"))

rep = r.cmd("AUTH PLAIN " + t.plain_response(*ALICE))
t.is_(rep.code, 538, "AUTH before STARTTLS: 538")
t.is_(rep.enh, "5.7.11", "AUTH before STARTTLS: enhanced code 5.7.11")
rep = r.cmd("MAIL FROM:<alice@example.org>")
t.is_(rep.code, 530, "MAIL before TLS and AUTH: 530")
rep = r.cmd("HELO client.test")
t.is_(rep.code, 250, "HELO is answered 250")

# -- STARTTLS and EHLO after TLS ---------------------------------------------
rep = r.cmd("STARTTLS")
t.is_(rep.code, 220, "STARTTLS: 220")
r.starttls()
t.ok(r.tls, "the TLS handshake after STARTTLS succeeds")
e = r.ehlo()
kw = ehlo_keywords(e)
t.is_(e.code, 250, "EHLO after TLS: 250")
auth = kw.get("AUTH", "").upper().split()
t.ok("PLAIN" in auth and "LOGIN" in auth,
     "EHLO after TLS lists AUTH PLAIN LOGIN")
t.ok("STARTTLS" not in kw, "EHLO after TLS no longer lists STARTTLS")
for word in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES"):
    t.ok(word in kw, "EHLO after TLS still lists %s" % word)

rep = r.cmd("MAIL FROM:<alice@example.org>")
t.is_(rep.code, 530, "MAIL before AUTH (TLS up): 530")
t.is_(rep.enh, "5.7.0", "MAIL before AUTH: enhanced code 5.7.0")
rep = r.cmd("RCPT TO:<bob@example.net>")
t.is_(rep.cls, 5, "RCPT before AUTH and MAIL: refused (5xx)")

# -- bad credentials: 535 5.7.8, unknown user identical -----------------------
r.cmd("QUIT")
r.close()


def auth_session():
    r = m.raw()
    r.reply()
    r.ehlo()
    r.cmd("STARTTLS")
    r.starttls()
    r.ehlo()
    return r


r = auth_session()
bad = r.cmd("AUTH PLAIN " + t.plain_response("alice", "wrong"))
t.is_(bad.code, 535, "a bad password: 535")
t.is_(bad.enh, "5.7.8", "a bad password: enhanced code 5.7.8")
unknown = r.cmd("AUTH PLAIN " + t.plain_response("nobody", "wrong"))
t.is_(unknown.code, 535, "an unknown user: 535")
t.is_(unknown.raw, bad.raw,
      "an unknown user gets exactly the reply of a bad password")
r.close()


def login_fail(user):
    r = auth_session()
    rep = r.cmd("AUTH LOGIN")
    if rep.code == 334:
        r.cmd(t.b64(user))
        rep = r.cmd(t.b64("wrong"))
    r.close()
    return rep


lu, lb = login_fail("nobody"), login_fail("alice")
t.is_(lb.code, 535, "AUTH LOGIN with a bad password: 535")
t.is_(lu.raw, lb.raw, "AUTH LOGIN: unknown user and bad password get the "
      "same reply")

# Timing: in a password file made with msa passwd (all $2b$12$, as real
# ones are), an unknown user must cost the same bcrypt run as a bad
# password (a dummy hash), within a wide margin.
mt = t.Msa(slow_users={"erin": "erin-pw", "frank": "frank-pw"})


def auth_time(user, password, daemon=m):
    r = daemon.session()
    start = time.monotonic()
    rep = r.cmd("AUTH PLAIN " + t.plain_response(user, password), timeout=20)
    took = time.monotonic() - start
    r.close()
    return took, rep


known = [auth_time("erin", "wrong-%d" % i, mt)[0] for i in range(3)]
unknown_t = [auth_time("nosuchuser%d" % i, "wrong", mt)[0] for i in range(3)]
mk, mu = statistics.median(known), statistics.median(unknown_t)
t.note("AUTH failure time: bad password %.3fs, unknown user %.3fs" % (mk, mu))
if not t.ok(abs(mk - mu) <= max(0.1, 0.5 * max(mk, mu)),
            "an unknown user takes as long to refuse as a bad password "
            "(all hashes from msa passwd)"):
    t.diag("bad password: %s" % known, "unknown user: %s" % unknown_t)
mt.stop()
took, rep = auth_time("carol", "carol-pw")
t.is_(rep.code, 235, "carol's $2b$12$ hash from msa passwd logs in: 235")

r = auth_session()
# -- AUTH PLAIN / LOGIN variants, '*' cancel -----------------------------------
rep = r.cmd("AUTH PLAIN")
t.is_(rep.code, 334, "AUTH PLAIN without initial response: 334 challenge")
rep = r.cmd("*")
t.is_(rep.code, 501, "'*' cancels AUTH PLAIN: 501")
rep = r.cmd("AUTH LOGIN")
t.is_(rep.code, 334, "AUTH LOGIN: 334 asks for the user name")
rep = r.cmd(t.b64("alice"))
t.is_(rep.code, 334, "AUTH LOGIN: 334 asks for the password")
rep = r.cmd("*")
t.is_(rep.code, 501, "'*' cancels AUTH LOGIN at the password: 501")
rep = r.cmd("AUTH PLAIN !!!not-base64!!!")
t.is_(rep.code, 501, "AUTH PLAIN with invalid base64: 501")
rep = r.cmd("AUTH CRAM-MD5")
t.is_(rep.code, 504, "an unsupported mechanism: 504")
rep = r.cmd("AUTH PLAIN")
if rep.code == 334:
    rep = r.cmd(t.plain_response(*ALICE))
t.is_(rep.code, 235, "AUTH PLAIN without initial response, then the "
      "credentials: 235")
t.is_(rep.enh, "2.7.0", "successful AUTH: enhanced code 2.7.0")
rep = r.cmd("AUTH PLAIN " + t.plain_response(*ALICE))
t.is_(rep.code, 503, "a second AUTH in a session: 503")
r.cmd("QUIT")
r.close()

r = auth_session()
rep = r.cmd("AUTH PLAIN " + t.plain_response(*ALICE))
t.is_(rep.code, 235, "AUTH PLAIN with initial response: 235")
r.close()

r = auth_session()
rep = r.cmd("AUTH LOGIN")
rep = r.cmd(t.b64("alice")) if rep.code == 334 else rep
rep = r.cmd(t.b64("alice-pw")) if rep.code == 334 else rep
t.is_(rep.code, 235, "AUTH LOGIN without initial response: 235")
r.close()

r = auth_session()
rep = r.cmd("AUTH LOGIN " + t.b64("alice"))
t.is_(rep.code, 334, "AUTH LOGIN with the user name as initial response: "
      "334 asks for the password")
rep = r.cmd(t.b64("alice-pw")) if rep.code == 334 else rep
t.is_(rep.code, 235, "AUTH LOGIN with initial response: 235")
r.close()

r = auth_session()
rep = r.cmd("AUTH PLAIN =")
t.ok(rep.code in (501, 535), "AUTH PLAIN '=' (an empty response) is refused "
     "(501 or 535), not taken as a challenge")
r.close()

# -- sender rights -------------------------------------------------------------
r = m.session(login=ALICE)


def mail_then_rset(sender, extra=""):
    rep = r.cmd("MAIL FROM:<%s>%s" % (sender, extra))
    r.cmd("RSET")
    return rep


rep = mail_then_rset("mallory@example.org")
t.is_(rep.code, 553, "MAIL FROM another login's address: 553")
t.is_(rep.enh, "5.7.1", "sender not allowed: enhanced code 5.7.1")
rep = mail_then_rset("bob@example.org")
t.is_(rep.code, 553, "MAIL FROM bob@example.org as alice: 553")
t.is_(mail_then_rset("alice@example.org").code, 250,
      "MAIL FROM the login's own address (login@domain): 250")
t.is_(mail_then_rset("alice+lists@example.org").code, 250,
      "MAIL FROM an address matching 'alice+*@example.org': 250")
t.is_(mail_then_rset("anyone@family.example").code, 250,
      "MAIL FROM an address matching '@family.example': 250")
t.is_(mail_then_rset("anyone@sub.family.example").code, 553,
      "'@family.example' does not cover subdomains: 553")
t.is_(mail_then_rset("").code, 250, "the null sender <> is allowed: 250")
t.is_(mail_then_rset("alice@example.org", " BODY=8BITMIME").code, 250,
      "MAIL FROM with BODY=8BITMIME: 250")
t.is_(mail_then_rset("alice@example.org", " SIZE=5000").code, 250,
      "MAIL FROM with SIZE below the limit: 250")
rep = mail_then_rset("alice@example.org", " SIZE=999999999")
t.is_(rep.code, 552, "MAIL FROM with SIZE over the limit: 552")
t.is_(rep.enh, "5.3.4", "SIZE over the limit: enhanced code 5.3.4")
rep = mail_then_rset("alice@example.org", " FROB=1")
t.ok(rep.code in (501, 555), "an unknown MAIL parameter: 555 (or 501)")
rep = mail_then_rset("alice@example.org>")
t.is_(rep.cls, 5, "MAIL FROM with broken syntax: 5xx")

r.close()

# -- RCPT: syntax and the recipient limit -------------------------------------
# (a fresh session per group: msa ends a session after 10 protocol errors)
r = m.session(login=ALICE)
t.is_(r.cmd("RCPT TO:<bob@example.net>").code, 503,
      "RCPT before MAIL: 503")
t.is_(r.cmd("MAIL FROM:<alice@example.org>").code, 250,
      "MAIL FROM:<alice@example.org>: 250")
t.is_(r.cmd("MAIL FROM:<alice@example.org>").code, 503,
      "a second MAIL in one transaction: 503")
rep = r.cmd("DATA")
t.ok(rep.code in (503, 554), "DATA before any RCPT: 503 (or 554)")
for bad_rcpt in ("<no spaces allowed@example.net>", "<bob@>", "<@>",
                 "<bob@example.net", "bob@@example.net"):
    rep = r.cmd("RCPT TO:" + bad_rcpt)
    t.is_(rep.code, 501, "RCPT TO:%s (bad syntax): 501" % bad_rcpt)
    t.is_(rep.enh, "5.1.3", "RCPT TO:%s: enhanced code 5.1.3" % bad_rcpt)
for i in range(1, 4):
    t.is_(r.cmd("RCPT TO:<rcpt%d@example.net>" % i).code, 250,
          "recipient %d of 3 allowed: 250" % i)
rep = r.cmd("RCPT TO:<rcpt4@example.net>")
t.is_(rep.code, 452, "a recipient over limits.recipients: 452")
t.is_(rep.enh, "4.5.3", "over the recipient limit: enhanced code 4.5.3")
t.is_(r.cmd("RSET").code, 250, "RSET: 250")

r.close()

# -- other commands ------------------------------------------------------------
r = m.session(login=ALICE)
t.is_(r.cmd("NOOP").code, 250, "NOOP: 250")
rep = r.cmd("HELP")
t.ok(rep.code in (211, 214), "HELP: 214 (or 211)")
t.is_(r.cmd("VRFY bob").code, 252, "VRFY: 252")
rep = r.cmd("EXPN staff")
t.is_(rep.cls, 5, "EXPN: refused with 5xx")
rep = r.cmd("FROBNICATE")
t.is_(rep.code, 500, "an unknown command: 500")
# An over-long command line: rejected whole; its tail is never run as a
# command of its own.
long_line = "NOOP " + "a" * (1000 - 5) + "QUIT"
rep = r.cmd(long_line)
t.is_(rep.cls, 5, "a command line over 1000 octets: 5xx")
extra = r.pending(0.5)
t.unlike(extra, r"^221", "the tail of an over-long line is not taken as "
         "QUIT")
t.is_(r.cmd("NOOP").code, 250, "the session goes on after an over-long line")

r.close()

# -- a whole transaction: queued only once on disk -----------------------------
r = m.session(login=ALICE)
body = t.crlf("Hello Bob,\n\nthis is a test.\n-- \nAlice\n")
msg = t.make_message(subject="first message", body=body)
before = set(m.queued())
reps = r.mail_transaction("alice@example.org", ["bob@example.net",
                                                "carol@example.com"], msg)
final = reps[-1]
files = m.queue_files()  # read at once: the reply promises they exist
t.is_(final.code, 250, "a complete message: 250")
t.like(final.raw, r"^250 2\.0\.0 Ok: queued as [0-9a-f]{16}\r\n",
       "the reply reads '250 2.0.0 Ok: queued as ID'")
qid = t.queue_id(final)
t.ok(qid and qid + ".data" in files and qid + ".env" in files,
     "ID.data and ID.env are in spool/queue when the 250 arrives")
t.is_(set(m.queued()) - before, {qid} if qid else set(),
      "exactly one new message in the queue")
if qid:
    q = m.message(qid)
    t.is_(q.body, body, "the body in the spool is the body sent, byte for "
          "byte")
    t.like(q.env, r"bob@example\.net", "the envelope names the first "
           "recipient")
    t.like(q.env, r"carol@example\.com", "the envelope names the second "
           "recipient")
    t.like(q.env, r"alice@example\.org", "the envelope names the sender")
    t.like(m.log(), r"event=\S+.*\b%s\b" % qid,
           "the log has a key=value event line with the queue id")

# -- message size at DATA --------------------------------------------------------
big = t.make_message(subject="too big",
                      body=(b"x" * 70 + b"\r\n") * 200)
before = set(m.queued())
reps = r.mail_transaction("alice@example.org", ["bob@example.net"], big)
t.is_(reps[-1].code, 552, "a message over message_size (no SIZE= given): "
      "552 after the data")
t.is_(reps[-1].enh, "5.3.4", "message over size: enhanced code 5.3.4")
t.is_(set(m.queued()), before, "nothing of the oversized message is queued")
t.is_(r.cmd("NOOP").code, 250, "the session goes on after an oversized "
      "message")

# -- a header section that is not RFC 5322 ---------------------------------------
before = set(m.queued())
broken = t.crlf("From: alice@example.org\nTo: bob@example.net\n"
                "Bad Header Name: x\nSubject: broken\n\nbody\n")
reps = r.mail_transaction("alice@example.org", ["bob@example.net"], broken)
t.is_(reps[-1].cls, 5, "a header field name with spaces: 5xx")
t.is_(set(m.queued()), before, "nothing of the malformed message is queued")

# -- the null sender -------------------------------------------------------------
before = set(m.queued())
reps = r.mail_transaction("", ["bob@example.net"], t.make_message(
    subject="Read: hello", body="Your message was read.\n"))
t.is_(reps[-1].code, 250, "a message from the null sender <> (From: the "
      "login's address) is queued")
r.cmd("QUIT")
r.close()

# -- pipelining -------------------------------------------------------------------
r = m.session(login=ALICE)
r.send(b"NOOP\r\nRSET\r\nVRFY x\r\nNOOP\r\n")
codes = [r.reply().code for _ in range(4)]
t.is_(codes, [250, 250, 252, 250], "four pipelined commands are answered in "
      "order, one reply each")
before = set(m.queued())
r.send(b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.net>\r\n"
       b"RCPT TO:<not valid>\r\nRCPT TO:<dave@example.net>\r\nDATA\r\n")
codes = [r.reply().code for _ in range(5)]
t.is_(codes, [250, 250, 501, 250, 354],
      "MAIL, three RCPT and DATA in one packet: replies in order")
pbody = t.crlf("pipelined body\n")
r.send(t.make_message(subject="pipelined", body=pbody) + b".\r\nNOOP\r\nQUIT\r\n")
final = r.reply()
t.is_(final.code, 250, "the pipelined message is queued")
t.is_(r.reply().code, 250, "NOOP after the data (same packet): 250")
t.is_(r.reply().code, 221, "QUIT after it: 221")
t.ok(r.at_eof(), "the server closes the connection after QUIT")
r.close()
qid = t.queue_id(final)
if qid:
    env = m.message(qid).env or b""
    t.like(env, r"dave@example\.net", "the pipelined envelope has dave")
    t.unlike(env, r"not valid", "... and not the refused recipient")
    t.is_(m.message(qid).body, pbody, "the pipelined body is intact")

# -- QUIT -----------------------------------------------------------------------
r = m.raw()
r.reply()
rep = r.cmd("QUIT")
t.is_(rep.code, 221, "QUIT: 221")
t.ok(r.at_eof(), "the connection is closed after QUIT")
r.close()

t.done_testing()
