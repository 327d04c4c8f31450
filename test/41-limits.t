#!/usr/bin/python3
"""Connection limits: limits.sessions_per_ip and limits.sessions.  Over a
limit a STARTTLS port answers 421 and closes, an implicit-TLS port just
closes; a freed slot is usable again; refused connections leak no slot.
Clients use several loopback source addresses (127.0.0.2, .3, ...)."""

import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
m = t.Msa(users={"alice": "alice-pw"},
          limits={"sessions": 3, "sessions_per_ip": 2})


def connect(source, kind="starttls"):
    """(Raw, first Reply) - Reply None if the connection was closed or
    the TLS handshake refused before any reply."""
    try:
        r = t.Raw(m.port[kind], tls=(kind == "implicit"), source=source,
                  timeout=5)
    except (ssl.SSLError, ConnectionError, OSError):
        return None, None
    try:
        rep = r.reply()
    except (ssl.SSLError, ConnectionError, OSError):
        rep = None
    if rep is not None and rep.code is None:
        rep = None
    return r, rep


open_ = []


def hold(source, kind="starttls"):
    r, rep = connect(source, kind)
    if rep is not None and rep.code == 220:
        open_.append(r)
    return r, rep


_, a1 = hold("127.0.0.2")
_, a2 = hold("127.0.0.2")
t.is_((a1.code if a1 else None, a2.code if a2 else None), (220, 220),
      "two sessions from 127.0.0.2 (sessions_per_ip 2) get the banner")
m.wait_sessions(2)
r, a3 = connect("127.0.0.2")
t.is_(a3.code if a3 else None, 421,
      "a third session from 127.0.0.2 gets 421 on the STARTTLS port")
t.ok(r is None or r.at_eof(3), "... and the connection is closed")
if r:
    r.close()
r, a3i = connect("127.0.0.2", "implicit")
t.is_(a3i, None, "a third session from 127.0.0.2 on the implicit port is "
      "closed without a banner")
if r:
    r.close()

_, b1 = hold("127.0.0.3")
t.is_(b1.code if b1 else None, 220, "a session from 127.0.0.3 is served "
      "(3 of limits.sessions 3)")
m.wait_sessions(3)
r, c1 = connect("127.0.0.4")
t.is_(c1.code if c1 else None, 421, "a fourth session in all (from "
      "127.0.0.4) gets 421: limits.sessions")
if r:
    r.close()

# Free one slot of 127.0.0.2: it can connect again.
open_.pop(0).close()
t.ok(m.wait_sessions(2), "the closed session's process ends")


def connect_again():
    r, rep = connect("127.0.0.2")
    if rep is not None and rep.code == 220:
        open_.append(r)
        return True
    if r:
        r.close()
    return False


got = t.wait_for(connect_again, 5, 0.2)
t.ok(got, "after one session from 127.0.0.2 ends, 127.0.0.2 may connect "
     "again")

# Close everything: refused connections must not have leaked a slot.
for r in open_:
    r.close()
open_.clear()
t.ok(m.wait_sessions(0), "all sessions end when the clients leave")
replies = [hold(src)[1] for src in ("127.0.0.2", "127.0.0.2", "127.0.0.5")]
t.is_([x.code if x else None for x in replies], [220, 220, 220],
      "after the refusals, the full limits are available again")
for r in open_:
    r.close()

t.done_testing()
