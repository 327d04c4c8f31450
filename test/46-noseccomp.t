#!/usr/bin/python3
"""sandbox.seccomp: false is the escape hatch for a kernel without seccomp
filtering: msa then runs every role without a filter (still chrooted,
unprivileged, no new privileges) and says so loudly in the log.  By default
every child is filtered."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

ALICE = ("alice", "alice-pw")


def roles(m):
    return {r: m.wait_role(r) for r in ("listener", "auth", "queue", "relay")}


m = t.Msa(users={"alice": "alice-pw"})
for role, pid in roles(m).items():
    t.ok(pid is not None and t.proc_status(pid).get("Seccomp") == "2",
         "by default the %s process runs under a seccomp filter" % role)
t.unlike(m.log(), r"event=sandbox-disabled",
         "by default nothing says the sandbox is off")
m.stop()

m = t.Msa(users={"alice": "alice-pw"}, sandbox={"seccomp": False})
t.like(m.log(), r"level=warning proc=parent event=sandbox-disabled",
       "with sandbox.seccomp: false the parent warns at start")
for role in ("listener", "auth", "queue", "relay"):
    # wait_role() waits for Seccomp 2: here the log line says it is set up.
    t.wait_for(lambda: "event=sandbox-disabled role=%s" % role in m.log(), 10)
    pid = m.role_pid(role)
    st = t.proc_status(pid) if pid else {}
    t.ok(pid is not None and st.get("Seccomp") == "0",
         "the %s process then runs without a filter" % role)
    t.is_(st.get("NoNewPrivs"), "1",
          "the %s process still has no new privileges" % role)
    t.ok(st.get("Uid", "0").split()[0] != "0",
         "the %s process still runs unprivileged" % role)
    t.like(m.log(), r"event=sandbox-disabled role=%s" % role,
           "the %s process says it runs without a filter" % role)
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
               t.make_message())
t.is_(rep.code, 250, "mail is still accepted without filters")
t.done_testing()
