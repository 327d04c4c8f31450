#!/usr/bin/python3
# Smarthost delivery: STARTTLS and implicit TLS with the certificate
# verified against the CA named by SSL_CERT_FILE, AUTH with the password
# from password_file; a wrong name, an unknown issuer, a wrong password, a
# refused connection or an unknown smarthost name defer (the message stays
# queued, the log says why, no bounce, no password to an unverified host).
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

LOGIN = ("alice", "secret")
SENDER = "alice@example.org"
SH_USER = "relay@provider.example"
SH_PASS = "c0rrect-h0rse-battery"
SH_NAME = "smarthost.test"

work, ca, good = t.smarthost_pki("smarthost", SH_NAME)
wrong = t.make_signed_cert(work, ca, "wrong", dns=("wrong.example",), ips=())
other_ca = t.make_ca(work, "otherca", "msatest unknown CA")
unknown = t.make_signed_cert(work, other_ca, "unknown", dns=(SH_NAME,),
                             ips=())
selfsigned = (os.path.join(work, "self.crt"), os.path.join(work, "self.key"))
p = t.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
           "ec_paramgen_curve:P-256", "-days", "3650", "-nodes",
           "-subj", "/CN=" + SH_NAME, "-addext",
           "subjectAltName=DNS:" + SH_NAME,
           "-keyout", selfsigned[1], "-out", selfsigned[0]])
if p.returncode != 0:
    t.bail_out("openssl: %s" % p.stderr)



def secret_file(name, text):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


right_pw = secret_file("right.secret", SH_PASS)
wrong_pw = secret_file("wrong.secret", "not-the-password")

auth = ["--auth", "%s:%s" % (SH_USER, SH_PASS)]
s_starttls = t.SmtpSink(["--starttls", "--rcpt",
                         "reject@*=550 5.1.1 reject: no such user"] + auth,
                        cert=good)
s_implicit = t.SmtpSink(["--implicit-tls"] + auth, cert=good)
s_wrongname = t.SmtpSink(["--starttls"] + auth, cert=wrong)
s_unknown = t.SmtpSink(["--starttls"] + auth, cert=unknown)
s_selfsigned = t.SmtpSink(["--starttls"] + auth, cert=selfsigned)
dead_port = t.free_port()

dns = t.FakeDNS([
    "%s A 127.0.0.1" % SH_NAME,
    # If msa looked these up it would not be using the smarthost.
    "example.net MX 10 mx.example.net",
    "mx.example.net A 127.0.0.9",
])


def daemon(port, tls="starttls", pwfile=right_pw, host=SH_NAME,
           give_up="1h"):
    return t.Msa(users={"alice": "secret"},
                 relay={"mode": "smarthost",
                        "smarthost": {"host": host, "port": port,
                                      "tls": tls, "username": SH_USER,
                                      "password_file": pwfile},
                        "retry": {"first": "1s", "max": "2s",
                                  "give_up": give_up}},
                 dns={"nameservers": [dns.nameserver]})


def submit(m, rcpts, subject):
    return t.submit_subject(m, LOGIN, SENDER, rcpts, subject)


def sink_events(s, kind):
    return [e for e in s.events() if e.get("event") == kind]


def no_bounce(m, what):
    t.is_(t.log_events(m.log(), "bounce"), [], "%s: no bounce" % what)
    t.ok(len(m.queued()) == 1, "%s: no other message was queued (%s)" % (
        what, m.queued()))


def stays_queued(m, qid, what, reason_re):
    """The recipient is deferred (twice, the second after a flush) with a
    reason matching reason_re, and the message stays queued."""
    ev = t.wait_events(m, "rcpt-deferred", 1, 15, id=qid)
    t.ok(ev, "%s: the recipient is deferred" % what)
    t.like(ev[0].get("reply", "") if ev else "", reason_re,
           "%s: the deferral says why" % what)
    att = t.log_events(m.log(), "delivery_attempt", id=qid,
                       result="failed")
    t.ok(att, "%s: log: event=delivery_attempt id=%s result=failed" % (
        what, qid))
    f = t.queue_cmd(m, "flush", qid)
    t.is_(f.returncode, 0, "%s: msa queue flush ID" % what)
    ev = t.wait_events(m, "rcpt-deferred", 2, 15, id=qid)
    t.cmp_ok(len(ev), ">=", 2, "%s: deferred again after the flush" % what)
    t.ok(qid in m.queued(), "%s: the message stays queued" % what)
    show = t.queue_cmd(m, "show", qid)
    t.like(show.stdout, r"state:\s+pending", "%s: msa queue show: pending"
           % what)


# --- STARTTLS, verified, AUTH --------------------------------------------
m = daemon(s_starttls.port)
q = submit(m, ["bob@example.net", "carol@other.example"], "via starttls")
t.ok(s_starttls.wait_received(1, 15), "STARTTLS smarthost receives the mail")
got = s_starttls.received()
rc = sorted(r for x in got for r in x["rcpt_tos"])
t.is_(rc, ["bob@example.net", "carol@other.example"],
      "every recipient, whatever its domain, went to the smarthost, once")
t.like(got[0]["tls"] if got else "", r"^TLSv1\.[23]$",
       "the session was encrypted (STARTTLS)")
t.is_(got[0]["auth"] if got else None, SH_USER,
      "msa authenticated with the configured username")
t.is_(got[0]["mail_from"] if got else None, SENDER, "envelope sender kept")
ev = t.log_events(m.log(), "delivery", id=q, status="sent")
t.is_(len(ev), 2, "log: one event=delivery status=sent line per recipient")
for e in ev[:1]:
    t.like(e.get("relay", ""), r"^smarthost\.test\[127\.0\.0\.1\]:%d$" %
           s_starttls.port, "log: relay=smarthost.test[127.0.0.1]:port")
    t.like(e.get("tls", ""), r"^TLSv1\.[23]$", "log: tls=<version>")
    t.is_(e.get("verified"), "yes", "log: verified=yes (SSL_CERT_FILE CA)")
qs = [(x[0], x[1]) for x in dns.queries()]
t.ok(any(x[0] == SH_NAME + "." for x in qs), "the smarthost name was "
     "resolved through dns.nameservers")
t.ok(not any(x[1] == "MX" for x in qs), "no MX lookup in smarthost mode")
t.ok(t.wait_for(lambda: q not in m.queued(), 10), "the message left the queue")

# A 550 from the smarthost: the bounce goes out through the smarthost too.
n = len(s_starttls.received())
q = submit(m, ["reject@example.net", "kate@example.net"], "via sh 550")
t.ok(s_starttls.wait_received(n + 2, 15),
     "550 at the smarthost: the good copy and the DSN both go through it")
new = s_starttls.received()[n:]
mail = [x for x in new if x["mail_from"] == SENDER]
dsn = [x for x in new if x["mail_from"] == "<>"]
t.is_([x["rcpt_tos"] for x in mail], [["kate@example.net"]],
      "550 at the smarthost: the accepted recipient got one copy")
t.is_([x["rcpt_tos"] for x in dsn], [[SENDER]],
      "550 at the smarthost: one DSN from <> to the sender")
t.is_([x["auth"] for x in dsn], [SH_USER], "the DSN was sent with AUTH")
d = t.Dsn(dsn[0]["data"]) if dsn else None
g = (d.recipient("reject@example.net") if d else None) or {}
t.is_(g.get("Status"), "5.1.1", "the DSN: Status: 5.1.1")
t.like(g.get("Diagnostic-Code", ""), r"550 5\.1\.1 reject: no such user",
       "the DSN: Diagnostic-Code: the smarthost's reply")
t.unlike(m.log(), re.escape(SH_PASS), "the password is never logged")
m.stop()

# --- implicit TLS, verified, AUTH ----------------------------------------
m = daemon(s_implicit.port, tls="implicit")
q = submit(m, ["dave@example.net"], "via implicit tls")
t.ok(s_implicit.wait_received(1, 15), "implicit-TLS smarthost receives it")
got = s_implicit.received()
t.like(got[0]["tls"] if got else "", r"^TLSv1\.[23]$",
       "implicit TLS: encrypted from the first byte")
t.is_(got[0]["auth"] if got else None, SH_USER, "implicit TLS: AUTH done")
t.is_(got[0]["rcpt_tos"] if got else None, ["dave@example.net"],
      "implicit TLS: the recipient")
ev = t.log_events(m.log(), "delivery", id=q, status="sent")
t.is_(ev[0].get("verified") if ev else None, "yes",
      "implicit TLS: log verified=yes")
t.is_([e for e in sink_events(s_implicit, "helo")
       if e.get("tls") is None], [],
      "implicit TLS: EHLO never came in clear")
m.stop()

# --- certificate for another name: defer, no password sent ---------------
m = daemon(s_wrongname.port)
q = submit(m, ["erin@example.net"], "wrong name")
stays_queued(m, q, "wrong-name certificate", r"(?i)verif|certificate")
t.is_(s_wrongname.received(), [], "wrong name: nothing delivered")
t.is_(sink_events(s_wrongname, "auth"), [],
      "wrong name: the password was not sent to it")
t.is_(sink_events(s_wrongname, "mail"), [], "wrong name: no MAIL sent")
no_bounce(m, "wrong name")
m.stop()

# --- certificate from an unknown CA: defer -------------------------------
m = daemon(s_unknown.port)
q = submit(m, ["frank@example.net"], "unknown issuer")
stays_queued(m, q, "unknown-CA certificate", r"(?i)verif|certificate")
t.is_(s_unknown.received(), [], "unknown CA: nothing delivered")
t.is_(sink_events(s_unknown, "auth"), [], "unknown CA: no password sent")
no_bounce(m, "unknown CA")
m.stop()

# --- self-signed certificate (right name, not trusted): defer -----------
m = daemon(s_selfsigned.port)
q = submit(m, ["gina@example.net"], "self signed")
stays_queued(m, q, "self-signed certificate", r"(?i)verif|certificate")
t.is_(s_selfsigned.received(), [], "self-signed: nothing delivered")
t.is_(sink_events(s_selfsigned, "auth"), [], "self-signed: no password")
no_bounce(m, "self-signed")
m.stop()

# --- wrong password: stays queued, logged, no bounce --------------------
before = len(s_starttls.received())
m = daemon(s_starttls.port, pwfile=wrong_pw)
q = submit(m, ["hank@example.net"], "wrong password")
stays_queued(m, q, "wrong password", r"(?i)auth")
t.ok(t.log_events(m.log(), "smarthost_auth_failed"),
     "wrong password: log event=smarthost_auth_failed")
t.ok(any(re.search(r"(?i)auth", e.get("reason", "")) for e in
         t.log_events(m.log(), "delivery_attempt", id=q)),
     "wrong password: the delivery_attempt line says authentication failed")
fails = [e for e in sink_events(s_starttls, "auth")
         if e.get("success") is False]
t.cmp_ok(len(fails), ">=", 1, "wrong password: the smarthost refused AUTH")
t.is_(len(s_starttls.received()), before, "wrong password: not delivered")
no_bounce(m, "wrong password")
lst = t.queue_cmd(m, "list")
t.like(lst.stdout, re.escape(q) + r".*<hank@example\.net> pending "
       r"attempts=[2-9]", "wrong password: queue list: pending, attempts")
m.stop()

# --- smarthost refuses the connection / has no address: defer -----------
m = daemon(dead_port)
q = submit(m, ["ivan@example.net"], "smarthost down")
stays_queued(m, q, "connection refused", r"(?i)refused|connect")
no_bounce(m, "connection refused")
m.stop()

m = daemon(s_starttls.port, host="nosuch.test")
q = submit(m, ["jane@example.net"], "smarthost nxdomain")
stays_queued(m, q, "smarthost NXDOMAIN", r"(?i)nosuch\.test|lookup|dns")
no_bounce(m, "smarthost NXDOMAIN")
m.stop()

t.done_testing()
