#!/usr/bin/python3
# Connection reuse by the relay: messages to one destination that follow
# each other go over one kept (STARTTLS + AUTH) connection to the
# smarthost, each transaction starting with RSET; the idle worker QUITs
# and exits after a few seconds; a kept connection the server dropped is
# replaced without deferring anything; in mx mode connections are kept
# per recipient domain.
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"
SH_USER = "relay@provider.example"
SH_PASS = "c0rrect-h0rse-battery"
SH_NAME = "smarthost.test"
IDLE_SECS = 5  # RELAY_IDLE_SECS in msa.h

work, ca, good = t.smarthost_pki("reuse", SH_NAME)
pwfile = os.path.join(work, "smarthost.secret")
with open(pwfile, "w") as f:
    f.write(SH_PASS + "\n")
os.chmod(pwfile, 0o600)

auth = ["--starttls", "--auth", "%s:%s" % (SH_USER, SH_PASS)]
sink = t.SmtpSink(auth, cert=good)
dns = t.FakeDNS(["%s A 127.0.0.1" % SH_NAME,
                 "a.example MX 10 mx.a.example",
                 "mx.a.example A 127.0.0.1",
                 "b.example MX 10 mx.b.example",
                 "mx.b.example A 127.0.0.1"])


def events(s, kind):
    return [e for e in s.events() if e.get("event") == kind]


def submit_many(m, rcpts_list, tag):
    """Several messages in one client session, quickly; their ids."""
    r = m.session(login=LOGIN)
    ids = []
    try:
        for i, rcpts in enumerate(rcpts_list):
            data = t.make_message(frm=SENDER, to=", ".join(rcpts),
                                  subject="%s %d" % (tag, i),
                                  body="Body %s %d.\n" % (tag, i))
            rep = r.mail_transaction(SENDER, rcpts, data)[-1]
            ids.append(t.queue_id(rep) if rep.code == 250 else None)
        r.cmd("QUIT", timeout=3)
    finally:
        r.close()
    t.ok(all(ids), "%s: %d messages accepted" % (tag, len(ids)))
    return ids


def relay_children(m):
    """Delivery workers: children of the relay process."""
    for line in reversed(m.log().splitlines()):
        if "event=relay_ready" in line:
            pid = int(line.split("msa[", 1)[1].split("]", 1)[0])
            return t.children_of(pid)
    return []


# --- smarthost: one connection for a burst -------------------------------
m = t.Msa(users={"alice": "secret"},
          relay={"mode": "smarthost", "concurrency": 1,
                 "smarthost": {"host": SH_NAME, "port": sink.port,
                               "tls": "starttls", "username": SH_USER,
                               "password_file": pwfile},
                 "retry": {"first": "1h", "max": "2h", "give_up": "1d"}},
          dns={"nameservers": [dns.nameserver]})
ids = submit_many(m, [["bob@example.net"], ["carol@example.net"],
                      ["dave@example.net", "erin@example.org"],
                      ["frank@example.net"]], "burst")
t.ok(sink.wait_received(4, 20), "every message of the burst arrived")
got = sink.received()
t.is_(sorted(r for x in got for r in x["rcpt_tos"]),
      ["bob@example.net", "carol@example.net", "dave@example.net",
       "erin@example.org", "frank@example.net"],
      "each recipient once")
t.is_(len(events(sink, "connect")), 1,
      "one connection carried the whole burst")
t.is_(len(events(sink, "auth")), 1, "one STARTTLS + AUTH for all of it")
t.ok(all(x["auth"] == SH_USER and x["tls"] for x in got),
     "every message went encrypted and authenticated")
t.is_(len(t.log_events(m.log(), "relay_job", reused="yes")), 3,
      "log: three jobs were handed to the idle worker (reused=yes)")
t.is_(t.log_events(m.log(), "rcpt-deferred"), [], "nothing was deferred")
t.ok(t.wait_for(lambda: not m.queued(), 10), "the queue is empty")

t.ok(t.wait_for(lambda: events(sink, "disconnect"), IDLE_SECS + 10),
     "after %d idle seconds the kept connection is closed" % IDLE_SECS)
t.ok(t.wait_for(lambda: not relay_children(m), 10),
     "and the idle worker has exited")
t.ok(t.log_events(m.log(), "relay_worker_retired", reason="idle"),
     "log: event=relay_worker_retired reason=idle")

# --- the server drops the kept connection: nothing is deferred -----------
n = len(sink.received())
ids = submit_many(m, [["gina@example.net"]], "before drop")
t.ok(sink.wait_received(n + 1, 15), "a message opens a new connection")
port = sink.port
sink.stop()
sink = t.SmtpSink(auth, cert=good, port=port)
ids = submit_many(m, [["hank@example.net"]], "after drop")
t.ok(sink.wait_received(1, 15),
     "after the server dropped the kept connection, the next message is "
     "delivered over a new one")
t.is_(t.log_events(m.log(), "rcpt-deferred"), [],
      "and it was never deferred")
t.ok(t.wait_for(lambda: not m.queued(), 10), "the queue is empty again")
m.stop()

# --- mx mode: connections kept per domain --------------------------------
mx = t.SmtpSink([])
m = t.Msa(users={"alice": "secret"},
          relay={"mode": "mx", "mx_port": mx.port, "concurrency": 1,
                 "retry": {"first": "1h", "max": "2h", "give_up": "1d"}},
          dns={"nameservers": [dns.nameserver]})
ids = submit_many(m, [["ann@a.example"], ["ben@b.example"],
                      ["amy@a.example"], ["bea@b.example"]], "mx")
t.ok(mx.wait_received(4, 20), "mx: every message arrived")
t.ok(t.wait_for(lambda: not m.queued(), 10), "mx: the queue is empty")
t.is_(len(events(mx, "connect")), 2,
      "mx: two domains, two connections for four messages")
jobs = t.log_events(m.log(), "relay_job")
t.is_(len([j for j in jobs if j.get("reused") == "yes"]), 2,
      "mx: the second message to each domain reused its connection")
m.stop()

t.done_testing()
