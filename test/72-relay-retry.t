#!/usr/bin/python3
# Retries and per-recipient results: 451 then 250 is delivered exactly
# once; 250 and 550 in one transaction deliver one copy and bounce only the
# refused recipient (with and without PIPELINING); a recipient that is
# still deferred when retry.give_up is reached bounces with 4.4.7; a
# restart (clean or after SIGKILL) picks the queue up without a flush.
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"
HOSTS = {"home": "127.0.0.1", "retry": "127.0.0.2", "pipe": "127.0.0.3",
         "restart": "127.0.0.4", "data": "127.0.0.5"}
port = t.free_port_on(sorted(HOSTS.values()))

home = t.SmtpSink(["--host", HOSTS["home"]], port=port)
rules = ["--rcpt", "later@*=451 4.3.0 try again later;times=1",
         "--rcpt", "later2@*=452 4.2.2 mailbox full for now;times=1",
         "--rcpt", "bad@*=550 5.1.1 <bad> no such user",
         "--rcpt", "slow@*=451 4.4.0 always busy"]
retry = t.SmtpSink(["--host", HOSTS["retry"]] + rules, port=port)
pipe = t.SmtpSink(["--host", HOSTS["pipe"], "--pipelining"] + rules,
                  port=port)
datasink = t.SmtpSink(["--host", HOSTS["data"], "--data",
                       "451 4.3.0 data later;times=1"], port=port)

dns = t.FakeDNS([
    "example.org MX 10 mx.example.org",
    "mx.example.org A " + HOSTS["home"],
    "retry.example MX 10 mx.retry.example",
    "mx.retry.example A " + HOSTS["retry"],
    "pipe.example MX 10 mx.pipe.example",
    "mx.pipe.example A " + HOSTS["pipe"],
    "restart.example MX 10 mx.restart.example",
    "mx.restart.example A " + HOSTS["restart"],
    "data.example MX 10 mx.data.example",
    "mx.data.example A " + HOSTS["data"],
])


def daemon(give_up):
    return t.Msa(users={"alice": "secret"},
                 relay={"mode": "mx", "mx_port": port,
                        "retry": {"first": "1s", "max": "2s",
                                  "give_up": give_up}},
                 dns={"nameservers": [dns.nameserver]})


def submit(m, rcpts, subject):
    return t.submit_subject(m, LOGIN, SENDER, rcpts, subject)


def with_subject(sink, subject):
    return [x for x in sink.received()
            if t.header_values(x["data"], "Subject") == [subject]]


def rcpt_events(sink, addr):
    return [e for e in sink.events()
            if e.get("event") == "rcpt" and e.get("address") == addr]


m = daemon("6s")
t0 = time.monotonic()
q_later = submit(m, ["later@retry.example"], "later then ok")
q_mixed = submit(m, ["good@retry.example", "bad@retry.example"],
                 "mixed serial")
q_pipe = submit(m, ["good@pipe.example", "bad@pipe.example"],
                "mixed pipelined")
q_slow = submit(m, ["slow@retry.example"], "give up")
q_data = submit(m, ["x@data.example", "y@data.example"], "data later")
q_half = submit(m, ["now@retry.example", "later2@retry.example"],
                "half later")

# --- 451 the first time, 250 later: delivered exactly once --------------
ev = t.wait_events(m, "rcpt-deferred", 1, 10, id=q_later)
t.ok(ev, "451: the recipient is deferred first")
if ev:
    t.is_(ev[0].get("to"), "later@retry.example", "log: to=<recipient>")
    t.is_(ev[0].get("attempts"), "1", "log: attempts=1")
    t.like(ev[0].get("retry_in", ""), r"^[12]s$",
           "log: retry_in= follows retry.first (1s, jitter)")
    t.like(ev[0].get("reply", ""), r"451", "log: reply= carries the 451")
t.ok(t.wait_for(lambda: with_subject(retry, "later then ok"), 10),
     "451 then 250: delivered on a retry, without a flush")
time.sleep(2.5)  # room for a duplicate to show up
got = with_subject(retry, "later then ok")
t.is_(len(got), 1, "451 then 250: delivered exactly once")
t.is_(len(rcpt_events(retry, "later@retry.example")), 2,
      "451 then 250: two RCPTs (one refused, one accepted)")
t.ok(t.log_events(m.log(), "delivery", id=q_later, status="sent"),
     "log: event=delivery status=sent for it")
t.ok(q_later not in m.queued(), "451 then 250: gone from the queue")
t.is_(t.dsns_about(home, "later then ok"), [], "451 then 250: no bounce")

# --- 250 and 452 in one transaction: only the deferred one is retried ----
t.ok(t.wait_for(lambda: len(with_subject(retry, "half later")) >= 2, 10),
     "250+452: two transactions in the end")
time.sleep(1.5)
got = with_subject(retry, "half later")
t.is_([x["rcpt_tos"] for x in got],
      [["now@retry.example"], ["later2@retry.example"]],
      "250+452: the accepted recipient first, the deferred one on the retry,"
      " each exactly once")
t.is_(len(rcpt_events(retry, "now@retry.example")), 1,
      "250+452: the delivered recipient is never given again")
t.ok(t.log_events(m.log(), "rcpt-deferred", id=q_half,
                  to="later2@retry.example"),
     "250+452: log: event=rcpt-deferred for the 452 recipient only")
t.is_(t.log_events(m.log(), "rcpt-deferred", id=q_half,
                   to="now@retry.example"), [],
      "250+452: no deferral logged for the accepted one")
t.is_(t.dsns_about(home, "half later"), [], "250+452: no bounce")

# --- 451 after the data, 250 later: delivered once to both ---------------
t.ok(t.wait_for(lambda: with_subject(datasink, "data later"), 10),
     "451 after DATA: delivered on a retry")
time.sleep(1.5)
got = with_subject(datasink, "data later")
t.is_(len(got), 1, "451 after DATA: delivered exactly once")
t.is_(sorted(got[0]["rcpt_tos"]) if got else None,
      ["x@data.example", "y@data.example"],
      "451 after DATA: both recipients, still in one transaction")
t.is_(len([e for e in datasink.events() if e.get("event") == "data"]), 2,
      "451 after DATA: two DATA in all (refused, then accepted)")
t.is_(t.dsns_about(home, "data later"), [], "451 after DATA: no bounce")

# --- 250 and 550 in one transaction --------------------------------------
for subject, sink, dom, qid in (("mixed serial", retry, "retry.example",
                                 q_mixed),
                                ("mixed pipelined", pipe, "pipe.example",
                                 q_pipe)):
    got = with_subject(sink, subject)
    t.is_(len(got), 1, "%s: the accepted recipient got one copy" % subject)
    t.is_(got[0]["rcpt_tos"] if got else None, ["good@" + dom],
          "%s: only the accepted recipient in the envelope" % subject)
    t.is_(len(rcpt_events(sink, "bad@" + dom)), 1,
          "%s: the refused recipient is not retried" % subject)
    t.ok(t.wait_for(lambda: t.dsns_about(home, subject), 10),
         "%s: a DSN reaches the sender" % subject)
    time.sleep(0.5)
    ds = t.dsns_about(home, subject)
    t.is_(len(ds), 1, "%s: exactly one DSN" % subject)
    if not ds:
        continue
    d = ds[0]
    t.is_(d.error, None, "%s: the DSN parses" % subject)
    t.is_(d.envelope["mail_from"], "<>", "%s: DSN from <>" % subject)
    t.is_(d.envelope["rcpt_tos"], [SENDER], "%s: DSN to the sender" %
          subject)
    t.is_([g.get("Final-Recipient") for g in d.per_recipient],
          ["rfc822; bad@" + dom],
          "%s: the DSN lists only the refused recipient" % subject)
    g = d.recipient("bad@" + dom) or {}
    t.is_(g.get("Action"), "failed", "%s: Action: failed" % subject)
    t.is_(g.get("Status"), "5.1.1", "%s: Status: 5.1.1 (from the reply)" %
          subject)
    t.like(g.get("Diagnostic-Code", ""), r"^smtp; ?550 5\.1\.1 <bad> no "
           r"such user$", "%s: Diagnostic-Code: smtp; <the 550 reply>" %
           subject)
    t.unlike(d.part("message/delivery-status") or b"", r"good@",
             "%s: the delivered recipient is not in the report" % subject)
    t.ok(t.log_events(m.log(), "rcpt-failed", id=qid,
                      to="bad@" + dom), "%s: log: event=rcpt-failed" %
         subject)
    t.ok(t.log_events(m.log(), "bounce", id=qid, nrcpt="1"),
         "%s: log: event=bounce id=%s nrcpt=1" % (subject, qid))

t.ok(re.search(r"(?m)127\.0\.0\.3\]:%d cmd=MAIL pipelined=yes" % port,
               m.log()), "PIPELINING offered: MAIL and RCPTs were pipelined "
     "(debug log)")
t.ok(re.search(r"(?m)127\.0\.0\.2\]:%d cmd=MAIL pipelined=no" % port,
               m.log()), "PIPELINING not offered: not pipelined")

# --- give_up reached: bounce with 4.4.7 ----------------------------------
ev = t.wait_events(m, "rcpt-expired", 1, 20, id=q_slow)
t.ok(ev, "give_up: the recipient expires")
elapsed = time.monotonic() - t0
t.cmp_ok(elapsed, ">=", 5.0, "give_up: not before give_up (6s) was reached")
t.cmp_ok(len(rcpt_events(retry, "slow@retry.example")), ">=", 3,
         "give_up: it was retried with backoff before (>= 3 attempts)")
t.ok(t.wait_for(lambda: t.dsns_about(home, "give up"), 10),
     "give_up: a DSN reaches the sender")
ds = t.dsns_about(home, "give up")
t.is_(len(ds), 1, "give_up: exactly one DSN")
if ds:
    d = ds[0]
    g = d.recipient("slow@retry.example") or {}
    t.is_(g.get("Action"), "failed", "give_up: Action: failed")
    t.like(g.get("Status", ""), r"^4\.4\.7$", "give_up: Status: 4.4.7")
    t.like(g.get("Diagnostic-Code", ""), r"451 4\.4\.0 always busy",
           "give_up: Diagnostic-Code carries the last reply")
    t.is_(d.envelope["mail_from"], "<>", "give_up: DSN from <>")
t.ok(t.log_events(m.log(), "bounce", id=q_slow),
     "give_up: log: event=bounce id=" + q_slow)
t.ok(t.wait_for(lambda: q_slow not in m.queued(), 10),
     "give_up: the message leaves the queue after its bounce")
t.ok(t.wait_for(lambda: not m.queued(), 10),
     "every message (bounces too) is gone: nothing retried forever")
t.is_(len(with_subject(retry, "mixed serial")), 1,
      "still exactly one copy for the accepted recipient")
m.stop()

# --- restart with messages in the queue ----------------------------------
m = daemon("60s")
q1 = submit(m, ["r1@restart.example"], "restart one")
q2 = submit(m, ["r2@restart.example"], "restart two")
t.ok(t.wait_events(m, "rcpt-deferred", 2, 10), "MX down: both deferred")
t.is_(m.stop(), 0, "msa stops cleanly with two messages queued")
t.is_(sorted(m.queued()), sorted([q1, q2]), "both stay in the spool")
late = t.SmtpSink(["--host", HOSTS["restart"]], port=port)
time.sleep(2.2)  # their next attempt is due by now
size = m.log_size()
m.start()
t.ok(late.wait_received(2, 15),
     "after a restart both are delivered, nobody ran msa queue flush")
t.like(m.log()[size:], r"event=queue-start messages=2\b",
       "log: event=queue-start messages=2")
t.unlike(m.log()[size:], r"event=flush", "no flush was involved")
time.sleep(1.5)
t.is_(sorted(r for x in late.received() for r in x["rcpt_tos"]),
      ["r1@restart.example", "r2@restart.example"],
      "restart: each delivered exactly once")
t.ok(t.wait_for(lambda: not m.queued(), 10), "restart: the queue is empty")

# Again after a crash (SIGKILL of every msa process).
late.stop()
q3 = submit(m, ["r3@restart.example"], "crash three")
t.ok(t.wait_events(m, "rcpt-deferred", 1, 10, id=q3), "MX down: deferred")
m.kill_all()
t.is_(m.queued(), [q3], "after SIGKILL the message is still in the spool")
late2 = t.SmtpSink(["--host", HOSTS["restart"]], port=port)
time.sleep(2.2)
m.start()
t.ok(late2.wait_received(1, 15), "after a crash it is delivered, no flush")
got = late2.received()
t.is_(got[0]["rcpt_tos"] if got else None, ["r3@restart.example"],
      "after a crash: the right recipient, once")
t.ok(t.wait_for(lambda: not m.queued(), 10), "after a crash: queue empty")

t.done_testing()
