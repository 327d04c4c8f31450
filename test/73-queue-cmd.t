#!/usr/bin/python3
# msa queue list | show ID | flush [ID] | delete ID: output, exit status
# (0 ok, 1 usage or unknown id, 2 no daemon), the log lines they leave,
# and who may use the control socket (root and the msa user only).
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"
port = t.free_port_on(["127.0.0.1"])
sink = t.SmtpSink(["--host", "127.0.0.1"], port=port)
dns = t.FakeDNS([
    "broken.example SERVFAIL",            # every lookup fails for now
    "slow.example TIMEOUT",               # no answer at all
    "ok.example MX 10 mx.ok.example",
    "mx.ok.example A 127.0.0.1",
    "example.org MX 10 mx.ok.example",
])
m = t.Msa(users={"alice": "secret"},
          relay={"mode": "mx", "mx_port": port,
                 "retry": {"first": "10m", "max": "1h", "give_up": "1d"}},
          dns={"nameservers": [dns.nameserver]})


def q(*args):
    return t.queue_cmd(m, *args)


def submit(rcpts, subject, sender=SENDER):
    data = t.make_message(frm=SENDER, to=", ".join(rcpts), subject=subject)
    r = m.submit(LOGIN, sender, rcpts, data)
    qid = t.queue_id(r)
    t.ok(r.code == 250 and qid, "%s: accepted (%s)" % (subject, r))
    return qid


def deferred(qid, n):
    return t.wait_events(m, "rcpt-deferred", n, 10, id=qid)


def lines(out):
    return [ln for ln in out.splitlines() if ln.strip()]


# A DNS timeout (c-ares gives up after its own timeout) on a second
# daemon: started first since it takes a while, checked at the end.
m_slow = t.Msa(users={"alice": "secret"},
               relay={"mode": "mx", "mx_port": port,
                      "retry": {"first": "10m", "max": "1h",
                                "give_up": "1d"}},
               dns={"nameservers": [dns.nameserver]})
r = m_slow.submit(LOGIN, SENDER, ["tim@slow.example"],
                  t.make_message(frm=SENDER, to="tim@slow.example",
                                 subject="dns timeout"))
q_slow = t.queue_id(r)
t.ok(q_slow, "dns timeout: accepted (%s)" % r)
r = t.queue_cmd(m_slow, "list")
t.like(r.stdout, r"(?m)^%s .*<tim@slow\.example> pending attempts=0 "
       r"next=in-flight" % q_slow,
       "list: a message being tried says attempts=0 next=in-flight")

# --- empty queue -----------------------------------------------------------
r = q("list")
t.is_(r.returncode, 0, "list on an empty queue: exit 0")
t.is_(r.stdout, "", "list on an empty queue: no output")

# --- two deferred messages and a delivered one ----------------------------
a = submit(["bob@broken.example", "carol@broken.example"], "first")
b = submit(["dave@broken.example"], "second")
c = submit(["erin@ok.example"], "delivered")
t.cmp_ok(len(deferred(a, 2)), ">=", 2, "first: both recipients deferred")
t.ok(deferred(b, 1), "second: deferred")
t.ok(sink.wait_received(1, 10), "third: delivered")
t.ok(t.wait_for(lambda: c not in m.queued(), 10), "third: left the queue")

r = q("list")
t.is_(r.returncode, 0, "list: exit 0")
t.is_(r.stderr, "", "list: nothing on stderr")
ls = lines(r.stdout)
t.is_(len(ls), 2, "list: one line per queued message") or t.diag(r.stdout)
t.is_(sorted(ln.split()[0] for ln in ls), sorted([a, b]),
      "list: each line starts with the queue id")
t.unlike(r.stdout, re.escape(c), "list: a delivered message is not listed")
la = [ln for ln in ls if ln.startswith(a)]
la = la[0] if la else ""
size = os.path.getsize(os.path.join(m.spool, "queue", a + ".data"))
t.like(la, r"\bage=\d+[smhd]", "list: age")
t.like(la, r"\bsize=%d\b" % size, "list: size (bytes of the data file)")
t.like(la, r"\bfrom=<alice@example\.org>", "list: sender")
t.like(la, r"<bob@broken\.example> pending attempts=1 next=\+\d+[smhd]",
       "list: first recipient, its state, attempts, next attempt")
t.like(la, r"<carol@broken\.example> pending attempts=1",
       "list: second recipient of the same message")
t.like(la, r'last="4\.4\.3 [^"]*broken\.example',
       "list: last error (the DNS failure)")

# --- show ------------------------------------------------------------------
r = q("show", a)
t.is_(r.returncode, 0, "show ID: exit 0")
for pat, what in ((r"(?m)^id:\s+%s$" % a, "id"),
                  (r"(?m)^created:\s+\d{4}-\d\d-\d\d ", "created"),
                  (r"(?m)^sender:\s+<alice@example\.org>$", "sender"),
                  (r"(?m)^login:\s+alice$", "login"),
                  (r"(?m)^size:\s+%d$" % size, "size"),
                  (r"(?m)^recipient: <bob@broken\.example>$", "recipient 1"),
                  (r"(?m)^recipient: <carol@broken\.example>$",
                   "recipient 2"),
                  (r"(?m)^\s+state:\s+pending$", "state"),
                  (r"(?m)^\s+attempts:\s+1$", "attempts"),
                  (r"(?m)^\s+last attempt:\s+\d{4}-", "last attempt"),
                  (r"(?m)^\s+next attempt:\s+\+\d+", "next attempt"),
                  (r"(?m)^\s+last reply:\s+4\.4\.3 ", "last reply")):
    t.like(r.stdout, pat, "show ID: %s" % what)

unknown = "0123456789abcdef"
r = q("show", unknown)
t.is_(r.returncode, 1, "show of an unknown id: exit 1")
t.like(r.stderr, r"no such message", "show unknown: says so on stderr")
t.is_(r.stdout, "", "show unknown: nothing on stdout")
r = q("show", "not-an-id")
t.is_(r.returncode, 1, "show of a malformed id: exit 1")
t.like(r.stderr, r"not-an-id", "show malformed: names it")

# --- flush ID ---------------------------------------------------------------
size_before = m.log_size()
r = q("flush", a)
t.is_(r.returncode, 0, "flush ID: exit 0")
t.like(r.stdout, r"^flushed 1 message$", "flush ID: says what it did")
t.cmp_ok(len(deferred(a, 4)), ">=", 4,
         "flush ID: both recipients tried again at once (10m retry)")
t.ok(t.log_events(m.log()[size_before:], "flush", id=a),
     "log: event=flush id=" + a)
t.like(q("list").stdout, r"(?m)^%s .*<bob@broken\.example> pending "
       r"attempts=2" % a, "flush ID: attempts=2 in list")
t.like(q("list").stdout, r"(?m)^%s .*<dave@broken\.example> pending "
       r"attempts=1 " % b, "flush ID: the other message was not touched")

# --- flush (all) ----------------------------------------------------------
r = q("flush")
t.is_(r.returncode, 0, "flush: exit 0")
t.like(r.stdout, r"^flushed 2 messages$", "flush: both messages")
t.ok(deferred(b, 2), "flush: the second message tried again too")
t.cmp_ok(len(deferred(a, 6)), ">=", 6, "flush: the first one as well")
r = q("flush", unknown)
t.is_(r.returncode, 1, "flush of an unknown id: exit 1")
t.like(r.stderr, r"no such message", "flush unknown: says so")

# --- delete -----------------------------------------------------------------
size_before = m.log_size()
r = q("delete", b)
t.is_(r.returncode, 0, "delete ID: exit 0")
t.like(r.stdout, r"^deleted %s$" % b, "delete ID: says so")
t.ok(t.log_events(m.log()[size_before:], "deleted", id=b),
     "log: event=deleted id=" + b)
t.is_([f for f in m.queue_files() if f.startswith(b)], [],
      "delete: its files are gone from the spool")
r = q("list")
t.is_(sorted(ln.split()[0] for ln in lines(r.stdout)), [a],
      "delete: list no longer shows it")
t.is_(q("show", b).returncode, 1, "delete: show of the deleted id: exit 1")
r = q("delete", b)
t.is_(r.returncode, 1, "delete of an unknown id: exit 1")
t.like(r.stderr, r"no such message", "delete unknown: says so")
t.is_(t.log_events(m.log(), "bounce"), [], "delete makes no bounce")
t.is_(len(sink.received()), 1, "the sink got only the delivered message")

# --- usage ------------------------------------------------------------------
for args, what in ((("queue",), "queue without a command"),
                   (("queue", "bogus"), "an unknown queue command"),
                   (("queue", "delete"), "delete without an id"),
                   (("queue", "show"), "show without an id"),
                   (("queue", "show", a, a), "show with two ids")):
    r = t.run_msa("-c", m.cfgpath, *args)
    t.is_(r.returncode, 1, "%s: exit 1" % what)
    t.like(r.stderr, r"(?i)usage|queue", "%s: a usage message" % what)

# --- who may use the control socket ---------------------------------------
def as_user(user, group):
    return t.run(["setpriv", "--reuid=" + user, "--regid=" + group,
                  "--clear-groups", t.MSA, "-c", m.cfgpath, "queue",
                  "list"])


r = as_user("msa", "msa")
t.is_(r.returncode, 0, "the msa user may list the queue")
t.like(r.stdout, r"(?m)^%s " % a, "the msa user sees the queue")
r = as_user("nobody", "nogroup")
t.is_(r.returncode, 2, "another user may not (exit 2)")
t.like(r.stderr, r"(?i)permission|only root", "another user: told why")
t.unlike(r.stdout, re.escape(a), "another user sees nothing")

# --- the DNS timeout: deferred, never bounced ------------------------------
ev = t.wait_events(m_slow, "rcpt-deferred", 1, 30, id=q_slow)
t.ok(ev, "dns timeout: the recipient is deferred")
t.like(ev[0].get("reply", "") if ev else "", r"^4\.4\.3",
       "dns timeout: a 4.4.3 (temporary) reason")
t.is_(t.log_events(m.log() + m_slow.log(), "rcpt-failed"), [],
      "no permanent failure anywhere (SERVFAIL, timeout: temporary)")
t.is_(t.log_events(m.log() + m_slow.log(), "bounce"), [],
      "and so no bounce")
t.ok(q_slow in m_slow.queued(), "dns timeout: still queued")
m_slow.stop()

# --- no daemon --------------------------------------------------------------
m.stop()
for args in (("list",), ("show", a), ("flush",), ("delete", a)):
    r = q(*args)
    t.is_(r.returncode, 2, "no daemon: queue %s exits 2" % " ".join(args))
    t.like(r.stderr, r"(?i)running|control|connect|reach",
           "no daemon: queue %s explains" % args[0])
t.ok(os.path.exists(os.path.join(m.spool, "queue", a + ".env")),
     "no daemon: delete did not remove anything behind its back")

t.done_testing()
