#!/usr/bin/python3
"""STARTTLS command injection (CVE-2011-0411 and siblings): commands sent in
clear text after STARTTLS, in the same packet, must be discarded; nothing
of them is answered or acted on once TLS is up."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
ALICE = ("alice", "alice-pw")
m = t.Msa(users={"alice": "alice-pw"})


def injected(name, packet, check_auth=False, split=False):
    """Send packet (STARTTLS + injected commands) after EHLO; return the
    Raw client after the TLS handshake (None if there was none).  With
    split, the injection is a second packet: depending on when it arrives
    it is discarded with the buffer or breaks the handshake; both are
    safe, answering it is not."""
    r = m.raw()
    r.reply()
    r.ehlo()
    if split:
        # STARTTLS and the injection in two packets sent back to back,
        # before the 220 is read.
        first, rest = packet.split(b"\r\n", 1)
        r.send(first + b"\r\n")
        r.send(rest)
    else:
        r.send(packet)
    rep = r.reply()
    t.is_(rep.code, 220, "%s: STARTTLS is answered 220" % name)
    extra = r.buf
    try:
        r.starttls()
    except OSError as e:
        if split:
            # The injected bytes came after the server emptied its buffer:
            # its TLS layer took them for a broken ClientHello.  Safe.
            t.pass_("%s: the late injected bytes break the handshake "
                    "instead of being run (%s)" % (name, e))
            r.close()
            return None
        t.fail("%s: the TLS handshake succeeds" % name, str(e))
        return None
    t.is_(extra, b"", "%s: nothing more is sent in clear after the 220" %
          name)
    got = r.pending(1.0)
    t.is_(got, b"", "%s: the injected commands are not answered inside TLS" %
          name)
    e = r.ehlo()
    t.ok(e.code == 250 and any(ln.upper().startswith("AUTH")
                               for ln in e.lines),
         "%s: the first reply inside TLS is the EHLO answer (with AUTH)" %
         name)
    return r


r = injected("STARTTLS+RSET in one packet", b"STARTTLS\r\nRSET\r\n")
if r:
    r.close()

r = injected("STARTTLS+NOOP sent as two packets", b"STARTTLS\r\nNOOP\r\n",
             split=True)
if r:
    r.close()

r = injected("STARTTLS+AUTH PLAIN with good credentials",
             b"STARTTLS\r\nAUTH PLAIN " +
             t.plain_response(*ALICE).encode() + b"\r\n")
if r:
    rep = r.cmd("MAIL FROM:<alice@example.org>")
    t.is_(rep.code, 530, "injected AUTH: the session is not authenticated "
          "after TLS (MAIL: 530)")
    r.close()

r = injected("STARTTLS+EHLO+MAIL", b"STARTTLS\r\nEHLO evil.test\r\n"
             b"MAIL FROM:<alice@example.org>\r\n")
if r:
    t.is_(r.auth_plain(*ALICE).code, 235, "after the injection, AUTH works")
    rep = r.cmd("RCPT TO:<bob@example.net>")
    t.is_(rep.code, 503, "the injected MAIL did not start a transaction "
          "(RCPT: 503)")
    r.close()

# Legitimate pipelining: EHLO and STARTTLS in one packet, STARTTLS last.
r = m.raw()
r.reply()
r.send(b"EHLO client.test\r\nSTARTTLS\r\n")
t.is_(r.reply().code, 250, "pipelined EHLO then STARTTLS: EHLO 250")
t.is_(r.reply().code, 220, "pipelined EHLO then STARTTLS: STARTTLS 220")
r.starttls()
t.is_(r.ehlo().code, 250, "pipelined EHLO then STARTTLS: TLS works")
r.close()

t.done_testing()
