#!/usr/bin/python3
# The relay's TLS client context and CA store (about 1 MB of heap with a
# system bundle) exist only while deliveries may use TLS: built once,
# before the first worker is forked (the workers share it), never by a
# relay whose smarthost has tls: none.  The bundle is opened at start-up,
# before the chroot; a missing one is reported then, and a smarthost that
# cannot be verified without it is not delivered to.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"
SH_NAME = "smarthost.test"

work, ca, good = t.smarthost_pki("tlslazy", SH_NAME)

dns = t.FakeDNS(["%s A 127.0.0.1" % SH_NAME])


def daemon(port, tls):
    return t.Msa(users={"alice": "secret"},
                 relay={"mode": "smarthost",
                        "smarthost": {"host": SH_NAME, "port": port,
                                      "tls": tls},
                        "retry": {"first": "1s", "max": "2s"}},
                 dns={"nameservers": [dns.nameserver]})


def submit(m, rcpts, subject):
    return t.submit_subject(m, LOGIN, SENDER, rcpts, subject)


def loaded(m):
    return t.log_events(m.log(), "relay_tls_loaded")


# --- tls: none: no context, no CA bundle ---------------------------------
clear = t.SmtpSink([])
m = daemon(clear.port, "none")
submit(m, ["bob@example.net"], "in clear")
t.ok(clear.wait_received(1, 15), "tls: none: the smarthost receives the mail")
t.is_(loaded(m), [], "tls: none: the relay never builds a TLS context")
t.is_(t.log_events(m.log(), "relay_ca_missing"), [],
      "tls: none: the CA bundle is not even looked at")
m.stop()

# --- starttls: built once, before the first delivery, and verified -------
sink = t.SmtpSink(["--starttls"], cert=good)
m = daemon(sink.port, "starttls")
t.is_(loaded(m), [], "starttls: nothing is built before a delivery")
q1 = submit(m, ["carol@example.net"], "first over tls")
t.ok(sink.wait_received(1, 15), "starttls: the smarthost receives the mail")
ev = t.wait_events(m, "delivery", 1, 10, id=q1, status="sent")
t.is_(ev[0].get("verified") if ev else None, "yes",
      "starttls: the certificate was verified with the lazily read bundle")
got = loaded(m)
t.is_(len(got), 1, "starttls: the context was built for the first delivery")
t.is_(got[0].get("certs") if got else None, "1",
      "starttls: with the bundle's one certificate")
q2 = submit(m, ["dave@example.net"], "second over tls")
t.ok(sink.wait_received(2, 15), "starttls: a second mail is delivered")
ev = t.wait_events(m, "delivery", 1, 10, id=q2, status="sent")
t.is_(ev[0].get("verified") if ev else None, "yes",
      "starttls: verified again")
t.is_(len(loaded(m)), 1, "starttls: the context is built once, not per job")
m.stop()

# --- a missing bundle: said at start-up; no unverified delivery ----------
os.environ["SSL_CERT_FILE"] = os.path.join(work, "no-such-bundle.pem")
sink2 = t.SmtpSink(["--starttls"], cert=good)
m = daemon(sink2.port, "starttls")
ev = t.wait_events(m, "relay_ca_missing", 1, 10)
t.ok(ev, "missing bundle: reported at start-up")
t.like(ev[0].get("reason", "") if ev else "", r"no-such-bundle\.pem",
       "missing bundle: the report names the file")
q = submit(m, ["erin@example.net"], "no bundle")
ev = t.wait_events(m, "rcpt-deferred", 1, 15, id=q)
t.ok(ev, "missing bundle: the recipient is deferred")
t.like(ev[0].get("reply", "") if ev else "", r"(?i)verif|certificate",
       "missing bundle: because the certificate cannot be verified")
t.is_(sink2.received(), [], "missing bundle: nothing was delivered")
m.stop()

t.done_testing()
