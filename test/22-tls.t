#!/usr/bin/python3
"""TLS: implicit TLS on the 465-style port, STARTTLS, the configured
certificate served, min_version honoured (1.3 refuses a TLS 1.2 client),
TLS session resumption (1.3 and 1.2 tickets, across session processes), and
no cleartext SMTP on the implicit port."""

import os
import smtplib
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)
ALICE = ("alice", "alice-pw")
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3

m = t.Msa(users={"alice": "alice-pw"})
der = t.cert_der(m.cert)

# -- implicit TLS ------------------------------------------------------------
r = m.raw("implicit")
t.ok(r.tls, "the implicit port completes a TLS handshake first")
t.is_(r.sock.getpeercert(binary_form=True), der,
      "the implicit port presents the configured certificate")
t.is_(r.sock.version(), "TLSv1.3", "TLS 1.3 is negotiated by default")
rep = r.reply()
t.is_(rep.code, 220, "the banner comes inside TLS")
e = r.ehlo()
t.like(e.text, r"(?m)^AUTH\b.*PLAIN", "EHLO on the implicit port lists AUTH")
t.unlike(e.text, r"(?m)^STARTTLS", "EHLO on the implicit port does not list "
         "STARTTLS")
t.is_(r.cmd("STARTTLS").cls, 5, "STARTTLS inside implicit TLS: 5xx")
t.is_(r.auth_plain(*ALICE).code, 235, "AUTH on the implicit port: 235")
r.close()

try:
    s = m.smtp("implicit", login=ALICE)
    code, _ = s.mail("alice@example.org")
    s.rcpt("bob@example.net")
    code, text = s.data(t.make_message(subject="implicit"))
    t.is_(code, 250, "smtplib.SMTP_SSL submits a message: 250")
    s.quit()
except (smtplib.SMTPException, OSError) as e:
    t.fail("smtplib.SMTP_SSL submits a message", str(e))

# -- STARTTLS ------------------------------------------------------------------
r = m.session()
t.ok(r.tls, "STARTTLS upgrades the connection")
t.is_(r.sock.getpeercert(binary_form=True), der,
      "STARTTLS presents the configured certificate")
t.is_(r.cmd("STARTTLS").code, 503, "a second STARTTLS: 503")
r.close()

for port_kind in ("implicit", "starttls"):
    try:
        r = m.session(kind=port_kind, context=t.client_context(V12, V12),
                      login=ALICE)
        t.is_(r.sock.version(), "TLSv1.2", "a TLS 1.2 client is accepted on "
              "the %s port (min_version 1.2)" % port_kind)
        r.close()
    except (ssl.SSLError, OSError, t.MsaError) as e:
        t.fail("a TLS 1.2 client is accepted on the %s port" % port_kind,
               str(e))

# Cleartext SMTP sent to the implicit port gets no SMTP answer.
r = t.Raw(m.port["implicit"], timeout=5)
r.send(b"EHLO cleartext.test\r\n")
got = r.pending(2)
t.unlike(got, r"^250", "cleartext EHLO on the implicit port is not "
         "answered with 250")
r.close()
t.is_(m.raw("implicit").reply().code, 220,
      "the implicit port still serves TLS clients afterwards")

# -- session resumption ------------------------------------------------------------


def resume(kind, version):
    """(first reused?, second reused?) over two connections with one
    client context; each connection is served by its own session
    process, so only stateless tickets can make this work."""
    ctx = t.client_context(version, version)
    out = []
    session = None
    for _ in range(2):
        if kind == "implicit":
            r = t.Raw(m.port["implicit"], tls=True, context=ctx,
                      session=session)
            r.reply()
        else:
            r = t.Raw(m.port["starttls"])
            r.reply()
            r.ehlo()
            r.cmd("STARTTLS")
            r.starttls(ctx, session)
        e = r.ehlo()  # application data: tickets have arrived by now
        out.append((r.sock.session_reused, e.code))
        session = r.sock.session
        r.cmd("QUIT")
        r.close()
    return out


for kind in ("implicit", "starttls"):
    for version, vname in ((V13, "1.3"), (V12, "1.2")):
        res = resume(kind, version)
        t.is_(res[1][0], True, "TLS %s session resumption on the %s port "
              "(the client resumes its first session)" % (vname, kind))
        t.is_(res[1][1], 250, "the resumed TLS %s session on the %s port "
              "serves EHLO" % (vname, kind))

# -- min_version 1.3 -------------------------------------------------------------
m13 = t.Msa(users={"alice": "alice-pw"}, tls={"min_version": "1.3"})
for port_kind in ("implicit", "starttls"):
    try:
        r = m13.session(kind=port_kind, context=t.client_context(V12, V12))
        t.fail("min_version 1.3 refuses a TLS 1.2 client on the %s port" %
               port_kind, "negotiated %s" % r.sock.version())
        r.close()
    except (ssl.SSLError, ConnectionResetError, t.MsaError, OSError) as e:
        t.pass_("min_version 1.3 refuses a TLS 1.2 client on the %s port" %
                port_kind)
        t.note("client saw: %s" % e)
    try:
        r = m13.session(kind=port_kind, login=ALICE,
                        context=t.client_context(V13))
        t.is_(r.sock.version(), "TLSv1.3", "min_version 1.3 accepts a TLS "
              "1.3 client on the %s port" % port_kind)
        r.close()
    except (ssl.SSLError, OSError, t.MsaError) as e:
        t.fail("min_version 1.3 accepts a TLS 1.3 client on the %s port" %
               port_kind, str(e))

t.done_testing()
