#!/usr/bin/python3
"""A child that keeps dying is neither restarted in a tight loop nor given
up on: after five starts within a minute the parent waits 30 seconds, logs
that it does, keeps running, and then brings the child back, so that mail
is served again once whatever killed it is gone."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)
ALICE = ("alice", "alice-pw")
m = t.Msa(users={"alice": "alice-pw"})

# Kill auth as soon as each new instance has confined itself.
killed = []
pid = m.wait_role("auth")
for _ in range(5):
    if pid is None:
        break
    os.kill(pid, signal.SIGKILL)
    killed.append(pid)
    pid = m.wait_role("auth", timeout=5, exclude=killed)
t.is_(len(killed), 5, "auth was restarted after each of its first four "
      "deaths and killed five times")
t.ok(t.wait_for(lambda: "event=restart-delayed child=auth" in m.log(), 5),
     "the fifth death within a minute is logged as a delayed restart")
t.ok(m.running(), "the parent keeps running instead of giving up")
t.unlike(m.log(), r"event=giving-up", "nothing says the parent gave up")
time.sleep(1)
t.is_(m.role_pid("auth"), None, "no auth process is spun up meanwhile")

back = m.wait_role("auth", timeout=40, exclude=killed)
t.ok(back is not None, "auth comes back after the delay")
t.like(m.log(), r"event=restarting child=auth",
       "the delayed restart is logged")
ok, rep = m.submit_retry(ALICE, "alice@example.org", ["bob@example.net"],
                         t.make_message(), timeout=15)
t.ok(ok, "a login and a submission work again (last reply: %s)" % rep)

t.done_testing()
