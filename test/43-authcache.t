#!/usr/bin/python3
"""auth.cache: with a cache duration, a repeat login with the same login and
password skips bcrypt (answered in a fraction of a bcrypt-12 check) until the
duration has passed; a wrong password is never answered from the cache; after
the password is changed in the file and msa gets SIGHUP, the old password
fails and the new one works.  Without auth.cache (the default) every login
pays bcrypt.  Times are only ever compared with each other, never with a
fixed figure."""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(150)
CACHE = 2  # seconds


def ready(m):
    """The auth process has made its dummy hash and serves requests."""
    return m.wait_log(r"proc=auth event=auth-ready", 15)


def login(m, user, password, r=None):
    """(reply code, seconds the AUTH command took, what auth logged), in
    the session r (opened, past STARTTLS) or a new one.  Sessions opened
    in advance keep TLS handshakes out of the 2 s a cache entry lives, on
    however busy a machine."""
    r = r or m.session()
    try:
        start = m.log_size()
        t0 = time.monotonic()
        code = r.auth_plain(user, password).code
        took = time.monotonic() - t0
    finally:
        r.close()
    line = m.wait_log(r"proc=auth event=auth login=%s .*" % user, 5, start)
    return code, took, line.group(0) if line else ""


def ms(s):
    return "%.1f ms" % (s * 1e3)


# -- auth.cache: 2s ------------------------------------------------------------
m = t.Msa(slow_users={"alice": "first-pw"}, auth={"cache": "%ds" % CACHE})
t.ok(ready(m), "the auth process says it is ready (cache on)")
t.like(m.log(), r"event=auth-ready verifiers=\d+ cache=%ds" % CACHE,
       "it reports its verifiers and the cache duration")

ahead = [m.session() for i in range(4)]
code, slow, how = login(m, "alice", "first-pw", ahead[0])
t.is_(code, 235, "the first login succeeds (bcrypt cost 12)")
t.like(how, r"result=ok cache=miss", "it was checked with bcrypt")
fast = []
for i in range(3):
    code, took, how = login(m, "alice", "first-pw", ahead[i + 1])
    t.is_(code, 235, "repeat login %d within %ds succeeds" % (i + 1, CACHE))
    t.like(how, r"result=ok cache=hit", "repeat login %d came from the "
           "cache" % (i + 1))
    fast.append(took)
cached = statistics.median(fast)
if not t.cmp_ok(cached, "<", slow / 2, "a cached login (%s) takes less than "
                "half a bcrypt-12 login (%s)" % (ms(cached), ms(slow))):
    t.diag("cached logins: %s" % ", ".join(ms(x) for x in fast))

code, took, how = login(m, "alice", "FIRST-pw")
t.is_(code, 535, "a wrong password for the cached login is refused: 535")
t.like(how, r"result=fail cache=miss", "it was checked with bcrypt, not the "
       "cache")

ahead = [m.session() for i in range(2)]
time.sleep(CACHE + 0.5)
code, again, how = login(m, "alice", "first-pw", ahead[0])
t.is_(code, 235, "after %ds the login still succeeds" % CACHE)
t.like(how, r"result=ok cache=miss", "but the entry expired: bcrypt again")
t.cmp_ok(again, ">", 2 * cached, "the login after expiry (%s) is slow again "
         "(cached: %s)" % (ms(again), ms(cached)))
code, took, how = login(m, "alice", "first-pw", ahead[1])
t.like(how, r"result=ok cache=hit", "and the next one is cached again")

# New password in the file, then SIGHUP: the cache must not keep the old one.
line = t.msa_passwd_line("alice", "second-pw")
ahead = [m.session() for i in range(4)]
code, took, how = login(m, "alice", "first-pw", ahead.pop())
t.like(how, r"result=ok", "alice logs in with her first password (cached)")
start = m.log_size()
m.write_users([line])
m.hup()
t.ok(m.wait_log(r"proc=auth event=reload users=1", 10, start),
     "after SIGHUP the auth process reloads the password file")
code, took, how = login(m, "alice", "first-pw", ahead[0])
t.is_(code, 535, "the old password, cached a moment ago, now fails: 535")
t.like(how, r"result=fail", "auth refused it")
code, took, how = login(m, "alice", "second-pw", ahead[1])
t.is_(code, 235, "the new password works: 235")
t.like(how, r"result=ok cache=miss", "checked with bcrypt")
code, took, how = login(m, "alice", "second-pw", ahead[2])
t.like(how, r"result=ok cache=hit", "and then cached")
m.stop()

# -- default: no cache --------------------------------------------------------
m2 = t.Msa(slow_users={"bob": "bob-pw"})
t.ok(ready(m2), "the auth process says it is ready (cache off)")
t.like(m2.log(), r"event=auth-ready verifiers=\d+ cache=0s",
       "the cache is off by default")
times = []
for i in range(3):
    code, took, how = login(m2, "bob", "bob-pw")
    t.is_(code, 235, "login %d without auth.cache succeeds" % (i + 1))
    t.unlike(how, r"cache=", "login %d was not looked up in a cache" % (i + 1))
    times.append(took)
t.cmp_ok(min(times[1:]), ">", 2 * cached, "repeat logins without the cache "
         "stay slow (%s; a cached login took %s)" % (
             ", ".join(ms(x) for x in times[1:]), ms(cached)))
t.unlike(m2.log(), r"cache=hit", "nothing is ever answered from a cache")

t.done_testing()
