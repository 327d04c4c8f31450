#!/usr/bin/python3
# Bounces: a null MX (RFC 7505) and an NXDOMAIN fail at once and the
# sender gets an RFC 3464 delivery status notification, checked field by
# field; one DSN per message lists every failed recipient and only those;
# a message from <> is never bounced, and a bounce that fails is dropped
# (no loop, no storm).  The log has one key=value line per bounce.
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"
HOSTNAME = "msa.test"
HOSTS = {"home": "127.0.0.1", "ok": "127.0.0.2", "rej": "127.0.0.3",
         "small": "127.0.0.4"}
port = t.free_port_on(sorted(HOSTS.values()))
home = t.SmtpSink(["--host", HOSTS["home"]], port=port)
okmx = t.SmtpSink(["--host", HOSTS["ok"]], port=port)
rejmx = t.SmtpSink(["--host", HOSTS["rej"], "--mail",
                    "550 5.7.1 sender refused here"], port=port)
smallmx = t.SmtpSink(["--host", HOSTS["small"], "--size", "200"],
                     port=port)
dns = t.FakeDNS([
    "example.org MX 10 mx.example.org",
    "mx.example.org A " + HOSTS["home"],
    "ok.example MX 10 mx.ok.example",
    "mx.ok.example A " + HOSTS["ok"],
    "nullmx.example MX 0 .",
    "deadend.example MX 0 .",
    "rej.example MX 10 mx.rej.example",
    "mx.rej.example A " + HOSTS["rej"],
    "small.example MX 10 mx.small.example",
    "mx.small.example A " + HOSTS["small"],
    # nx.example: not in the zone, so NXDOMAIN
])
m = t.Msa(users={"alice": "secret"},
          senders={"alice": ["alice@deadend.example"]},
          relay={"mode": "mx", "mx_port": port,
                 "retry": {"first": "1s", "max": "2s", "give_up": "30s"}},
          dns={"nameservers": [dns.nameserver]})


def submit(rcpts, subject, sender=SENDER, frm=SENDER, body=None):
    data = t.make_message(frm=frm, to=", ".join(rcpts), subject=subject,
                          body=body or "Body of %s.\n" % subject)
    r = m.submit(LOGIN, sender, rcpts, data)
    qid = t.queue_id(r)
    t.ok(r.code == 250 and qid, "%s: accepted (%s)" % (subject, r))
    return qid


def one_dsn(subject):
    t.ok(t.wait_for(lambda: t.dsns_about(home, subject), 15),
         "%s: a DSN reaches the sender" % subject)
    time.sleep(0.5)
    ds = t.dsns_about(home, subject)
    t.is_(len(ds), 1, "%s: exactly one DSN" % subject)
    return ds[0] if ds else None


q_null = submit(["bob@nullmx.example"], "null mx",
                body="BODYTOKEN-nullmx must not come back.\n")
q_nx = submit(["carol@nx.example"], "nxdomain")
q_multi = submit(["dave@nullmx.example", "erin@nx.example",
                  "frank@ok.example"], "several")
q_rej = submit(["ivy@rej.example", "jack@rej.example"], "mail refused")
q_big = submit(["kim@small.example"], "too big", body="x" * 70 + "\n" +
               ("y" * 70 + "\n") * 8)

# --- null MX: the DSN field by field -------------------------------------
d = one_dsn("null mx")
if d is None:
    t.bail_out("no DSN to check")
t.is_(d.error, None, "DSN: parses as MIME")
env = d.envelope
t.is_(env["mail_from"], "<>", "DSN envelope: MAIL FROM:<>")
t.is_(env["rcpt_tos"], [SENDER], "DSN envelope: to the original sender")
t.like(d.header("From") or "", r"(?i)^(\"?MAILER-DAEMON\"?.*<)?"
       r"MAILER-DAEMON@%s>?$" % re.escape(HOSTNAME),
       "From: MAILER-DAEMON@<hostname>")
t.like(d.header("To") or "", r"^<?%s>?$" % re.escape(SENDER),
       "To: the envelope sender")
t.ok(d.header("Subject"), "Subject: present (%s)" % d.header("Subject"))
t.like(d.header("Date") or "", r"^\w{3}, \d{1,2} \w{3} \d{4} "
       r"\d\d:\d\d:\d\d [+-]\d{4}$", "Date: RFC 5322 date-time")
t.like(d.header("Message-ID") or "", r"^<[^<>@\s]+@[^<>@\s]+>$",
       "Message-ID: present and well formed")
t.is_(d.header("MIME-Version"), "1.0", "MIME-Version: 1.0")
t.like(d.header("Auto-Submitted") or "", r"^auto-replied",
       "Auto-Submitted: auto-replied (RFC 3834)")
t.is_(d.content_type, "multipart/report", "Content-Type: multipart/report")
t.is_(d.params.get("report-type"), "delivery-status",
      "Content-Type: report-type=delivery-status")
t.ok(d.params.get("boundary"), "Content-Type: a boundary")
t.is_(d.part_types(), ["text/plain", "message/delivery-status",
                       "text/rfc822-headers"],
      "parts: human-readable, delivery-status, original headers (RFC 6522)")
human = (d.part("text/plain") or b"").decode("utf-8", "replace")
t.like(human, r"bob@nullmx\.example", "human part names the recipient")
pm = d.per_message
t.is_(pm.get("Reporting-MTA"), "dns; " + HOSTNAME,
      "Reporting-MTA: dns; <hostname>")
if "Arrival-Date" in pm:
    t.like(pm["Arrival-Date"], r"^\w{3}, \d{1,2} \w{3} \d{4} ",
           "Arrival-Date: a date-time")
else:
    t.pass_("Arrival-Date: optional, absent")
t.is_(len(d.per_recipient), 1, "one per-recipient group")
g = d.recipient("bob@nullmx.example") or {}
t.is_(g.get("Final-Recipient"), "rfc822; bob@nullmx.example",
      "Final-Recipient: rfc822; <recipient>")
t.is_(g.get("Action"), "failed", "Action: failed")
t.is_(g.get("Status"), "5.1.10", "Status: 5.1.10 (null MX, RFC 7505)")
t.like(g.get("Diagnostic-Code", ""), r"^[A-Za-z][\w-]*; ?\S",
       "Diagnostic-Code: type; text")
t.like(g.get("Diagnostic-Code", ""), r"(?i)null MX",
       "Diagnostic-Code: says null MX")
dc = g.get("Diagnostic-Code", "")
t.ok(not re.match(r"(?i)smtp;", dc) or re.match(r"(?i)smtp; ?[245]\d\d ",
                                                dc),
     "Diagnostic-Code: type smtp only for a remote SMTP reply (RFC 3464; "
     "a local DNS verdict needs another type, e.g. X-Postfix does)") or \
    t.diag("    got: Diagnostic-Code: %s" % dc)
orig = (d.part("text/rfc822-headers") or b"")
t.like(orig, r"(?m)^From: alice@example\.org\r?$", "original From header")
t.like(orig, r"(?m)^To: bob@nullmx\.example\r?$", "original To header")
t.like(orig, r"(?m)^Subject: null mx\r?$", "original Subject header")
t.like(orig, r"(?m)^Message-ID: <", "original Message-ID (added by msa)")
t.like(orig, r"(?m)^Received: ", "original Received header")
t.unlike(orig, r"BODYTOKEN", "the original body is not returned")
t.unlike(env["data"], r"BODYTOKEN", "nowhere in the DSN")
t.ok(re.search(rb"(?<!\r)\n", env["data"]) is None,
     "the DSN has CRLF line ends only")
ev = t.log_events(m.log(), "bounce", id=q_null)
t.is_(len(ev), 1, "log: one event=bounce line for the message")
if ev:
    t.like(ev[0].get("bounce_id", ""), r"^[0-9a-f]{16}$",
           "log: bounce_id=<the DSN's queue id>")
    t.is_(ev[0].get("to"), "<%s>" % SENDER, "log: to=<sender>")
    t.is_(ev[0].get("nrcpt"), "1", "log: nrcpt=1")
    t.ok(t.log_events(m.log(), "delivery", id=ev[0].get("bounce_id"),
                      rcpt=SENDER, status="sent"),
         "log: the DSN itself was delivered (event=delivery id=<bounce_id>)")
t.ok(t.log_events(m.log(), "rcpt-failed", id=q_null,
                  to="bob@nullmx.example"),
     "log: event=rcpt-failed id=... to=bob@nullmx.example")

# --- NXDOMAIN ---------------------------------------------------------------
d = one_dsn("nxdomain")
g = (d.recipient("carol@nx.example") if d else None) or {}
t.is_(g.get("Final-Recipient"), "rfc822; carol@nx.example",
      "NXDOMAIN: Final-Recipient")
t.is_(g.get("Action"), "failed", "NXDOMAIN: Action: failed")
t.is_(g.get("Status"), "5.1.2", "NXDOMAIN: Status: 5.1.2 (bad domain)")
t.like(g.get("Diagnostic-Code", ""), r"^[A-Za-z][\w-]*; ?\S",
       "NXDOMAIN: Diagnostic-Code")
t.is_(d.envelope["mail_from"] if d else None, "<>", "NXDOMAIN: from <>")
t.is_(d.per_message.get("Reporting-MTA") if d else None,
      "dns; " + HOSTNAME, "NXDOMAIN: Reporting-MTA")
t.like((d.part("text/rfc822-headers") if d else b"") or b"",
       r"(?m)^To: carol@nx\.example\r?$", "NXDOMAIN: original headers")
t.ok([x for x in dns.queries() if x[0] == "nx.example." and
      x[2] == "NXDOMAIN"], "NXDOMAIN: the fake DNS answered NXDOMAIN")

# --- one DSN per message, every failed recipient, only those ----------------
d = one_dsn("several")
if d:
    t.is_(sorted(x.get("Final-Recipient") for x in d.per_recipient),
          ["rfc822; dave@nullmx.example", "rfc822; erin@nx.example"],
          "several: one DSN lists both failed recipients")
    t.is_((d.recipient("dave@nullmx.example") or {}).get("Status"),
          "5.1.10", "several: null MX status")
    t.is_((d.recipient("erin@nx.example") or {}).get("Status"), "5.1.2",
          "several: NXDOMAIN status")
    t.unlike(d.part("message/delivery-status") or b"", r"frank@",
             "several: the delivered recipient is not listed")
t.ok(okmx.wait_received(1, 10), "several: the good recipient got it")
t.is_([r for x in okmx.received() for r in x["rcpt_tos"]],
      ["frank@ok.example"], "several: once")
ev = t.log_events(m.log(), "bounce", id=q_multi)
t.is_([e.get("nrcpt") for e in ev], ["2"],
      "log: one event=bounce nrcpt=2 for that message")

# --- 5xx to MAIL FROM: every recipient of that transaction bounces -------
d = one_dsn("mail refused")
if d:
    t.is_(sorted(x.get("Final-Recipient") for x in d.per_recipient),
          ["rfc822; ivy@rej.example", "rfc822; jack@rej.example"],
          "MAIL 550: both recipients in one DSN")
    t.is_(sorted(x.get("Status") for x in d.per_recipient),
          ["5.7.1", "5.7.1"], "MAIL 550: Status: 5.7.1 (from the reply)")
    t.like((d.recipient("ivy@rej.example") or {}).get("Diagnostic-Code",
                                                        ""),
           r"^smtp; ?550 5\.7\.1 sender refused here$",
           "MAIL 550: Diagnostic-Code: smtp; <reply>")
t.is_([e.get("event") for e in rejmx.events() if e.get("event") == "rcpt"],
      [], "MAIL 550: no RCPT after the refused MAIL")

# --- bigger than the MX's SIZE: bounce without sending it -------------------
d = one_dsn("too big")
g = (d.recipient("kim@small.example") if d else None) or {}
t.like(g.get("Status", ""), r"^5\.3\.4$", "SIZE: Status: 5.3.4")
t.is_(smallmx.received(), [], "SIZE: nothing sent to the small MX")
t.is_([e for e in smallmx.events() if e.get("event") == "data"], [],
      "SIZE: no DATA attempted")

# --- a message from <> that fails is dropped, not bounced -------------------
n_home = len(home.received())
qz = submit(["gina@nullmx.example"], "from null sender", sender="")
ev = t.wait_events(m, "bounce-dropped", 1, 10, id=qz)
t.ok(ev, "null sender: log: event=bounce-dropped id=" + str(qz))
t.is_(ev[0].get("reason") if ev else None, "null-sender",
      "null sender: reason=null-sender")
time.sleep(2)
t.is_(t.log_events(m.log(), "bounce", id=qz), [],
      "null sender: no event=bounce for it")
t.is_(len(home.received()), n_home, "null sender: nothing sent to anyone")
queued = t.log_events(m.log(), "queued")
t.ok(not any(e.get("from") == "<>" and e.get("id") != qz for e in queued),
     "null sender: no new message queued from <>")
t.ok(t.wait_for(lambda: qz not in m.queued(), 10),
     "null sender: the failed message is gone from the queue")

# --- a bounce that fails is dropped: no loop ---------------------------------
qd = submit(["hank@nx.example"], "bounce to a dead end",
            sender="alice@deadend.example", frm="alice@deadend.example")
ev = t.wait_events(m, "bounce", 1, 10, id=qd)
t.ok(ev, "dead end: the failed message is bounced")
bid = ev[0].get("bounce_id") if ev else "none"
t.is_(ev[0].get("to") if ev else None, "<alice@deadend.example>",
      "dead end: the bounce goes to the (undeliverable) sender")
dr = t.wait_events(m, "bounce-dropped", 1, 10, id=bid)
t.ok(dr, "dead end: the bounce fails and is dropped (event=bounce-dropped "
     "id=<bounce_id>)")
time.sleep(3)
t.is_(t.log_events(m.log(), "bounce", id=bid), [],
      "dead end: the bounce is never bounced")
t.is_(len(t.log_events(m.log(), "bounce")), 6,
      "dead end: six bounces in this whole file, no storm")
t.ok(t.wait_spool_empty(m, 10), "the spool is empty at the end")
t.is_(m.queued(), [], "nothing left queued")

t.done_testing()
