#!/usr/bin/python3
"""Slowloris: with limits.sessions_per_ip 3 and limits.sessions 10, three
connections from 127.0.0.1 that trickle one byte every couple of seconds
hold that address's slots: a fourth from 127.0.0.1 gets 421 (the implicit
port just closes), while clients from other loopback addresses (bound to
127.0.0.2, .3 ...) are served normally, a whole submission included.  The
total limit is reached only by other addresses, never by the slow ones,
and the slots come back when the slow clients go."""

import os
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
ALICE = ("alice", "alice-pw")
m = t.Msa(users={"alice": "alice-pw"},
          limits={"sessions": 10, "sessions_per_ip": 3})


def first_reply(source, kind="starttls"):
    """(Raw or None, first Reply or None if closed before any reply)."""
    try:
        r = t.Raw(m.port[kind], tls=(kind == "implicit"), source=source,
                  timeout=5)
    except (ssl.SSLError, OSError):
        return None, None
    try:
        rep = r.reply()
    except (ssl.SSLError, OSError):
        rep = None
    if rep is not None and rep.code is None:
        rep = None
    return r, rep


# -- three slow clients from 127.0.0.1 ------------------------------------------
slow = []
for i in range(3):
    r, rep = first_reply("127.0.0.1")
    t.is_(rep.code if rep else None, 220, "slow client %d from 127.0.0.1 "
          "gets the banner" % (i + 1))
    if r:
        slow.append(r)
t.ok(m.wait_sessions(3), "three session processes hold them")

stop = threading.Event()
trickled = [0]
alive_slow = [True] * len(slow)


def trickle():
    """One byte of a never-ending command line every 2 s per client."""
    while not stop.wait(2.0):
        for i, r in enumerate(slow):
            if not alive_slow[i]:
                continue
            try:
                r.send(b"N")
                trickled[0] += 1
            except OSError:
                alive_slow[i] = False


th = threading.Thread(target=trickle, daemon=True)
th.start()
time.sleep(4.5)  # a couple of trickles first

r, rep = first_reply("127.0.0.1")
t.is_(rep.code if rep else None, 421, "a fourth client from 127.0.0.1 gets "
      "421 (sessions_per_ip 3)")
t.like(str(rep), r"^421 4\.7\.0 ", "... 421 4.7.0 with a reason")
t.ok(r is None or r.at_eof(3), "... and is disconnected")
if r:
    r.close()
r, rep = first_reply("127.0.0.1", "implicit")
t.is_(rep, None, "on the implicit-TLS port it is closed without a banner")
if r:
    r.close()

# -- other addresses are served ----------------------------------------------------
r, rep = first_reply("127.0.0.2")
t.is_(rep.code if rep else None, 220, "a client from 127.0.0.2 gets the "
      "banner at once")
if r:
    t.is_(r.ehlo().code, 250, "... and its EHLO is answered")
    r.close()
good, rep = m.submit_retry(ALICE, "alice@example.org", ["bob@example.net"],
                           t.make_message(subject="past the slowloris"),
                           timeout=10, source="127.0.0.2")
t.ok(good, "a whole submission (STARTTLS, AUTH, DATA) from 127.0.0.2 is "
     "queued while 127.0.0.1 is held (%s)" % rep)
t.ok(all(alive_slow), "the slow clients are still connected")

# Stalled TLS handshakes on the implicit port hold their address's slots
# the same way, and only those.
stalled = [t.source_connect(m.port["implicit"], "127.0.0.3")
           for _ in range(3)]
t.ok(m.wait_sessions(6), "three stalled TLS handshakes from 127.0.0.3 have "
     "their sessions")
r, rep = first_reply("127.0.0.3", "implicit")
t.is_(rep, None, "a fourth implicit-TLS client from 127.0.0.3 is closed "
      "without a banner")
if r:
    r.close()
r, rep = first_reply("127.0.0.4", "implicit")
t.is_(rep.code if rep else None, 220, "one from 127.0.0.4 completes TLS and "
      "gets the banner")
if r:
    r.close()
for sk in stalled:
    sk.close()
t.ok(m.wait_sessions(3, timeout=10), "the stalled handshakes' sessions end "
     "when they hang up")

# Fill limits.sessions with other addresses: 3 slow + 7 others = 10.
others = []
for i in range(7):
    r, rep = first_reply("127.0.0.%d" % (10 + i))
    if rep is not None and rep.code == 220:
        others.append(r)
t.is_(len(others), 7, "seven more clients from seven other addresses are "
      "served (10 sessions in all)")
r, rep = first_reply("127.0.0.30")
t.is_(rep.code if rep else None, 421, "the eleventh gets 421 "
      "(limits.sessions 10)")
if r:
    r.close()
for r in others:
    r.close()
t.ok(m.wait_sessions(3, timeout=10), "the others' sessions end, the slow "
     "ones stay")

t.wait_for(lambda: trickled[0] >= 6, 5)
t.cmp_ok(trickled[0], ">=", 6, "the slow clients trickled bytes meanwhile "
         "(%d)" % trickled[0])
t.ok(all(alive_slow), "and are still connected (the command timeout is "
     "minutes)")

# -- the slow ones go: 127.0.0.1 is served again -----------------------------------
stop.set()
th.join(5)
for r in slow:
    r.close()
t.ok(m.wait_sessions(0, timeout=10), "closing the slow clients ends their "
     "sessions")
good, rep = m.submit_retry(ALICE, "alice@example.org", ["bob@example.net"],
                           t.make_message(subject="after the slowloris"),
                           timeout=10)
t.ok(good, "127.0.0.1 submits again once its slots are free (%s)" % rep)
t.is_(m.child_deaths(), [], "no msa process died")
t.is_(m.stop(), 0, "msa stops cleanly")
t.done_testing()
