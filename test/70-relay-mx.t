#!/usr/bin/python3
# Direct MX delivery: MX preference order, fallback to the next MX when the
# first refuses the connection or answers 421, implicit MX (A of the
# domain), one transaction per domain, STARTTLS whenever offered, and
# relay.tls: required refusing to send in clear.  Every fake MX listens on
# its own loopback address (127.0.0.N) on the one relay.mx_port.
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"

HOSTS = {
    "home": "127.0.0.1",       # example.org: where bounces would go
    "order1": "127.0.0.2",     # order.example MX 10
    "order2": "127.0.0.3",     # order.example MX 20 (must stay unused)
    "refused": "127.0.0.4",    # refuse.example MX 5: nothing listens
    "refuse2": "127.0.0.5",    # refuse.example MX 10
    "busy1": "127.0.0.6",      # busy.example MX 10: greeting 421
    "busy2": "127.0.0.7",      # busy.example MX 20
    "implicit": "127.0.0.8",   # implicit.example: no MX, an A record
    "tls": "127.0.0.9",        # tls.example: offers STARTTLS
    "mail1": "127.0.0.10",     # mail421.example MX 10: 421 to MAIL
    "mail2": "127.0.0.11",     # mail421.example MX 20
    "notls": "127.0.0.12",     # notls.example: no STARTTLS
    "helo": "127.0.0.13",      # helo.example: answers EHLO with 502
    "dots": "127.0.0.14",      # dots.example: dot-stuffing check
}
V6 = t.have_ipv6()
if V6:
    HOSTS["v6"] = "::1"        # v6.example: AAAA only

port = t.free_port_on(sorted(set(HOSTS.values())))
# A second port for the dual-stack case: nothing on [::1], a sink on v4.
DUAL4 = "127.0.0.15"
port2 = t.free_port_on([DUAL4] + (["::1"] if V6 else []))


def sink(name, *args):
    return t.SmtpSink(["--host", HOSTS[name]] + list(args), port=port)


sinks = {
    "home": sink("home"),
    "order1": sink("order1"),
    "order2": sink("order2"),
    "refuse2": sink("refuse2"),
    "busy1": sink("busy1", "--greeting", "421 4.3.2 busy1 is going away"),
    "busy2": sink("busy2"),
    "implicit": sink("implicit"),
    "tls": sink("tls", "--starttls"),
    "mail1": sink("mail1", "--mail", "421 4.3.2 mail1 shutting down"),
    "mail2": sink("mail2"),
    "notls": sink("notls"),
    "helo": sink("helo", "--no-ehlo"),
    "dots": sink("dots"),
}
if V6:
    sinks["v6"] = sink("v6")
dual = t.SmtpSink(["--host", DUAL4], port=port2)

zone = [
    "example.org MX 10 mx.example.org",
    "mx.example.org A " + HOSTS["home"],
    # The higher preference is listed first on purpose.
    "order.example MX 20 mx2.order.example",
    "order.example MX 10 mx1.order.example",
    "mx1.order.example A " + HOSTS["order1"],
    "mx2.order.example A " + HOSTS["order2"],
    "refuse.example MX 10 mx2.refuse.example",
    "refuse.example MX 5 mx1.refuse.example",
    "mx1.refuse.example A " + HOSTS["refused"],
    "mx2.refuse.example A " + HOSTS["refuse2"],
    "busy.example MX 10 mx1.busy.example",
    "busy.example MX 20 mx2.busy.example",
    "mx1.busy.example A " + HOSTS["busy1"],
    "mx2.busy.example A " + HOSTS["busy2"],
    "implicit.example A " + HOSTS["implicit"],
    "implicit.example TXT \"v=spf1 -all\"",
    "tls.example MX 10 mx.tls.example",
    "mx.tls.example A " + HOSTS["tls"],
    "mail421.example MX 10 mx1.mail421.example",
    "mail421.example MX 20 mx2.mail421.example",
    "mx1.mail421.example A " + HOSTS["mail1"],
    "mx2.mail421.example A " + HOSTS["mail2"],
    "notls.example MX 10 mx.notls.example",
    "mx.notls.example A " + HOSTS["notls"],
    "allbusy.example MX 10 mx1.busy.example",
    "allbusy.example MX 20 mx1.refuse.example",
    "helo.example MX 10 mx.helo.example",
    "mx.helo.example A " + HOSTS["helo"],
    "dots.example MX 10 mx.dots.example",
    "mx.dots.example A " + HOSTS["dots"],
    "v6.example MX 10 mx.v6.example",
    "mx.v6.example AAAA ::1",
    "dual.example MX 10 mx.dual.example",
    "mx.dual.example AAAA ::1",
    "mx.dual.example A " + DUAL4,
]
dns = t.FakeDNS(zone)

RETRY = {"first": "1s", "max": "2s", "give_up": "60s"}


def daemon(**relay):
    cfg = {"mode": "mx", "mx_port": port, "retry": RETRY}
    cfg.update(relay)
    return t.Msa(users={"alice": "secret"}, relay=cfg,
                 dns={"nameservers": [dns.nameserver]})


def submit(m, rcpts, subject, body=None):
    data = t.make_message(frm=SENDER, to=", ".join(rcpts), subject=subject,
                          body=body or "Body of %s.\n" % subject)
    r = m.submit(LOGIN, SENDER, rcpts, data)
    qid = t.queue_id(r)
    t.ok(r.code == 250 and qid, "%s: accepted with a queue id (%s)" % (
        subject, r))
    return qid


def subjects(s):
    return [t.header_values(x["data"], "Subject") for x in s.received()]


def events(s, kind):
    return [e for e in s.events() if e.get("event") == kind]


m = daemon()

# --- MX order; recipients of one domain share one transaction -----------
q1 = submit(m, ["a@order.example", "b@order.example"], "order one")
q2 = submit(m, ["c@order.example"], "order two")
q3 = submit(m, ["d@order.example"], "order three")
t.ok(sinks["order1"].wait_received(3, 15),
     "MX order: the three messages reach the preference-10 host")
got = sinks["order1"].received()
t.is_(len(got), 3, "MX order: mx1 received exactly three messages")
t.is_(sinks["order2"].received(), [],
      "MX order: the preference-20 host received nothing")
t.is_(events(sinks["order2"], "connect"), [],
      "MX order: nobody even connected to the preference-20 host")
first = [x for x in got if t.header_values(x["data"], "Subject") ==
         ["order one"]]
t.is_(len(first), 1, "one domain, two recipients: delivered once")
if first:
    t.is_(sorted(first[0]["rcpt_tos"]), ["a@order.example",
                                         "b@order.example"],
          "one domain: both RCPTs in the same transaction")
    t.is_(first[0]["mail_from"], SENDER, "envelope sender is kept")
    t.like(first[0]["data"], r"Body of order one\.",
           "the message body arrives")
datas = [e for e in events(sinks["order1"], "data")]
t.is_(len(datas), 3, "mx1 saw exactly three DATA (one per message)")
rcpts = events(sinks["order1"], "rcpt")
t.is_(sorted(e["address"] for e in rcpts),
      ["a@order.example", "b@order.example", "c@order.example",
       "d@order.example"], "each recipient was given exactly once (RCPT)")
qs = [(q[0], q[1]) for q in dns.queries()]
t.ok(("order.example.", "MX") in qs, "the MX of order.example was asked")

dl = t.wait_events(m, "delivery", 4, 10, status="sent")
mine = t.log_events(m.log(), "delivery", id=q1)
t.is_(sorted(e.get("rcpt") for e in mine),
      ["a@order.example", "b@order.example"],
      "log: one event=delivery line per recipient with id=<queue id>")
for e in mine:
    t.like(e.get("relay", ""),
           r"^mx1\.order\.example\[127\.0\.0\.2\]:%d$" % port,
           "log: relay=host[address]:port (%s)" % e.get("rcpt"))
    t.is_(e.get("tls"), "none", "log: tls=none for a server without "
          "STARTTLS (%s)" % e.get("rcpt"))
    t.like(e.get("reply", ""), r"^250", "log: reply= carries the 250")
    t.like(e.get("delay", ""), r"^\d+s$", "log: delay=Ns")
t.ok(t.wait_for(lambda: q1 not in m.queued() and q2 not in m.queued() and
                q3 not in m.queued(), 10),
     "delivered messages leave the queue")
t.ok(t.log_events(m.log(), "removed", id=q1), "log: event=removed id=" + q1)

# --- first MX refuses the connection: the next one takes it ------------
q = submit(m, ["e@refuse.example"], "refused first")
t.ok(sinks["refuse2"].wait_received(1, 15),
     "refused connection: the next MX receives the message")
got = sinks["refuse2"].received()
t.is_(len(got), 1, "refused connection: delivered exactly once")
t.is_(got[0]["rcpt_tos"] if got else None, ["e@refuse.example"],
      "refused connection: the right recipient")
att = t.log_events(m.log(), "delivery_attempt", id=q)
t.ok(any(re.search(r"127\.0\.0\.4", e.get("relay", "")) and
         e.get("result") == "failed" for e in att),
     "log: a failed delivery_attempt line for the refusing MX",
     ) or t.diag("attempts: %r" % att)
t.ok(any(re.search(r"refused", e.get("reason", ""), re.I) for e in att),
     "log: the reason says the connection was refused")
t.ok(t.log_events(m.log(), "delivery", id=q, status="sent",
                  relay=re.compile(r"127\.0\.0\.5")),
     "log: delivered through mx2.refuse.example")

# --- first MX answers 421 at the greeting -------------------------------
q = submit(m, ["f@busy.example"], "busy first")
t.ok(sinks["busy2"].wait_received(1, 15),
     "421 greeting: the next MX receives the message")
t.is_(len(sinks["busy2"].received()), 1, "421 greeting: delivered once")
t.ok(events(sinks["busy1"], "connect"),
     "421 greeting: the first MX was tried first")
t.ok(any(re.search(r"421|busy1", e.get("reason", ""))
         for e in t.log_events(m.log(), "delivery_attempt", id=q)),
     "log: the failed attempt carries the 421 reply")
t.ok(t.log_events(m.log(), "delivery", id=q, status="sent",
                  relay=re.compile(r"127\.0\.0\.7")),
     "log: delivered through mx2.busy.example")

# --- first MX answers 421 to MAIL ---------------------------------------
q = submit(m, ["g@mail421.example"], "mail 421")
t.ok(sinks["mail2"].wait_received(1, 15),
     "421 to MAIL: the next MX receives the message")
t.is_(sinks["mail1"].received(), [], "421 to MAIL: nothing stored at mx1")
t.ok([e for e in events(sinks["mail1"], "mail")],
     "421 to MAIL: MAIL was sent to mx1 first")
t.is_(len(sinks["mail2"].received()), 1, "421 to MAIL: delivered once")

# --- every MX refuses or says 421: deferred, never bounced ---------------
q = submit(m, ["z@allbusy.example"], "all busy")
ev = t.wait_events(m, "rcpt-deferred", 1, 15, id=q)
t.ok(ev, "all MX hosts busy or down: the recipient is deferred")
att = t.log_events(m.log(), "delivery_attempt", id=q)
t.ok(any("127.0.0.6" in e.get("relay", "") for e in att) and
     any("127.0.0.4" in e.get("relay", "") for e in att),
     "all MX hosts busy or down: both were tried")
t.is_(t.log_events(m.log(), "rcpt-failed", id=q), [],
      "all MX hosts busy or down: no permanent failure")
t.ok(q in m.queued(), "all MX hosts busy or down: still queued")
t.is_(t.queue_cmd(m, "delete", q).returncode, 0, "(deleted)")

# --- implicit MX ----------------------------------------------------------
q = submit(m, ["h@implicit.example", "i@order.example"], "implicit mx")
t.ok(sinks["implicit"].wait_received(1, 15),
     "implicit MX: the domain's A host receives the message")
got = sinks["implicit"].received()
t.is_(got[0]["rcpt_tos"] if got else None, ["h@implicit.example"],
      "implicit MX: only the recipient of that domain")
t.ok(sinks["order1"].wait_received(4, 10),
     "two domains in one message: the other domain gets its own copy")
last = sinks["order1"].received()[-1] if sinks["order1"].received() else {}
t.is_(last.get("rcpt_tos"), ["i@order.example"],
      "two domains: one transaction per domain")
qs = [(x[0], x[1], x[2]) for x in dns.queries()]
t.ok(("implicit.example.", "MX", "NOERROR") in qs,
     "implicit MX: the MX query was answered NOERROR without records")
t.ok(any(x[0] == "implicit.example." and x[1] == "A" for x in qs),
     "implicit MX: then the domain's own address was asked")
t.ok(t.log_events(m.log(), "delivery", id=q, status="sent",
                  rcpt="h@implicit.example",
                  relay=re.compile(r"^implicit\.example\[127\.0\.0\.8\]")),
     "log: relay=implicit.example[127.0.0.8]:port")

# --- STARTTLS whenever offered (opportunistic) ---------------------------
q = submit(m, ["j@tls.example"], "starttls offered")
t.ok(sinks["tls"].wait_received(1, 15), "STARTTLS MX receives the message")
got = sinks["tls"].received()
t.like(got[0]["tls"] if got else "", r"^TLSv1\.[23]$",
       "the message went over TLS (STARTTLS was used)")
ev = t.log_events(m.log(), "delivery", id=q)
t.like(ev[0].get("tls", "") if ev else "", r"^TLSv1\.[23]$",
       "log: tls=<version>")
t.is_(ev[0].get("verified") if ev else None, "no",
      "log: verified=no for a self-signed MX certificate (still sent)")

# --- an old server: EHLO refused, HELO works -----------------------------
q = submit(m, ["m@helo.example"], "helo fallback")
t.ok(sinks["helo"].wait_received(1, 15), "HELO fallback: delivered")
verbs = [e.get("verb") for e in events(sinks["helo"], "helo")]
t.is_(verbs[:2], ["EHLO", "HELO"], "HELO fallback: EHLO, then HELO")

# --- dot-stuffing: the body arrives byte for byte -------------------------
body = t.crlf(".leading dot\n..two dots\n.\nmiddle . dot\n. \n...\nend\n")
data = t.make_message(frm=SENDER, to="n@dots.example", subject="dots",
                      body=body)
r = m.submit(LOGIN, SENDER, ["n@dots.example"], data)
t.is_(r.code, 250, "dots: accepted")
t.ok(sinks["dots"].wait_received(1, 15), "dots: delivered")
got = sinks["dots"].received()
t.is_(t.body_of(got[0]["data"]) if got else None, body,
      "dots: lines starting with '.' arrive unchanged (stuffed on the wire)")

# --- 8BITMIME: BODY=8BITMIME passed on, 8-bit bytes intact --------------
body8 = "Grüße aus Köln, 8-bit.\r\n".encode("utf-8")
data = t.make_message(frm=SENDER, to="q@dots.example", subject="8bit",
                      body=body8, extra="Content-Type: text/plain; "
                      "charset=utf-8\nContent-Transfer-Encoding: 8bit\n")
r = m.session(login=LOGIN)
reps = [r.cmd("MAIL FROM:<%s> BODY=8BITMIME" % SENDER),
        r.cmd("RCPT TO:<q@dots.example>"), r.cmd("DATA")]
r.send(t.dot_stuff(data) + b".\r\n")
reps.append(r.reply())
r.close()
t.is_([x.code for x in reps], [250, 250, 354, 250], "8bit: accepted")
t.ok(sinks["dots"].wait_received(2, 15), "8bit: delivered")
got = sinks["dots"].received()[-1:]
t.ok(got and "BODY=8BITMIME" in [o.upper() for o in got[0]["mail_options"]],
     "8bit: MAIL FROM carries BODY=8BITMIME") or t.diag(
         "mail_options: %r" % (got[0]["mail_options"] if got else None))
t.is_(t.body_of(got[0]["data"]) if got else None, body8,
      "8bit: the 8-bit body arrives byte for byte")

# --- IPv6 ------------------------------------------------------------------
if V6:
    q = submit(m, ["o@v6.example"], "ipv6 only")
    t.ok(sinks["v6"].wait_received(1, 15), "IPv6: an AAAA-only MX gets it")
    t.ok(t.log_events(m.log(), "delivery", id=q, status="sent",
                      relay=re.compile(r"^mx\.v6\.example\[::1\]:%d$" %
                                       port)),
         "log: relay=mx.v6.example[::1]:port")
else:
    t.skip("no IPv6 on loopback", 3)

m.stop()

# --- every address of an MX host is tried (IPv6 and IPv4) ----------------
m3 = t.Msa(users={"alice": "secret"},
           relay={"mode": "mx", "mx_port": port2, "retry": RETRY},
           dns={"nameservers": [dns.nameserver]})
q = submit(m3, ["p@dual.example"], "dual stack")
t.ok(dual.wait_received(1, 15), "dual stack: delivered over IPv4")
t.is_(len(dual.received()), 1, "dual stack: once")
if V6:
    t.ok(any(re.search(r"\[::1\]", e.get("relay", "")) for e in
             t.log_events(m3.log(), "delivery_attempt", id=q,
                          result="failed")),
         "dual stack: the refused IPv6 address was tried first")
else:
    t.skip("no IPv6 on loopback")
m3.stop()

# --- relay.tls: required -------------------------------------------------
m2 = daemon(tls="required")
before = len(sinks["tls"].received())
q = submit(m2, ["k@notls.example"], "tls required no starttls")
qtls = submit(m2, ["l@tls.example"], "tls required with starttls")
ev = t.wait_events(m2, "rcpt-deferred", 1, 15, id=q)
t.ok(ev, "tls required, no STARTTLS: the recipient is deferred")
t.like(ev[0].get("reply", "") if ev else "", r"TLS",
       "tls required: the reason names TLS")
t.ok(t.wait_for(lambda: len(sinks["tls"].received()) > before, 15),
     "tls required: a server offering STARTTLS still gets its mail")
got = sinks["tls"].received()[-1:]
t.like(got[0]["tls"] if got else "", r"^TLSv1\.[23]$",
       "tls required: that mail went over TLS")
t.is_(sinks["notls"].received(), [],
      "tls required: nothing was sent in clear")
t.is_([e for e in events(sinks["notls"], "mail")], [],
      "tls required: not even MAIL FROM was sent in clear")
t.ok(q in m2.queued(), "tls required: the message stays queued")
lst = t.queue_cmd(m2, "list")
t.like(lst.stdout, re.escape(q) + r".*<k@notls\.example> pending",
       "msa queue list shows it pending")
t.unlike(m2.log(), r"event=bounce .*id=%s" % q, "no bounce for it")
t.is_(t.log_events(m2.log(), "delivery", id=q, status="sent"), [],
      "log: no delivery line with status=sent for it")

t.done_testing()
