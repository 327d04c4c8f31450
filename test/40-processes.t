#!/usr/bin/python3
"""Privilege separation: every child (listener, auth, queue, relay, and a
session) runs as the msa user with no capabilities, NoNewPrivs 1, Seccomp 2
and a chroot (its root is not /); each child leads a process group of its
own, which what it forks (a session) shares; the parent restarts a killed
child and service goes on; SIGTERM and SIGINT stop everything with exit 0
within a few seconds, even with a session open."""

import os
import pwd
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(150)
ALICE = ("alice", "alice-pw")
MSA = pwd.getpwnam("msa")
m = t.Msa(users={"alice": "alice-pw"})
SPOOL = os.path.realpath(m.spool)
ROOTS = {SPOOL, os.path.join(SPOOL, "empty")}


def pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def leaders():
    """The parent's children that lead their own process group: the roles.
    An orphan of a killed child's group is briefly the parent's child too
    (it is a subreaper), until it reaps it."""
    return [p for p in m.children() if pgid(p) == p]


def group_exists(pgrp):
    """Any process (a zombie too) left in process group pgrp?"""
    try:
        os.killpg(pgrp, 0)
    except ProcessLookupError:
        return False
    return True


def label(pid):
    st = t.proc_status(pid)
    return "pid %d (%s, root %s)" % (pid, st.get("Name", "?"), t.proc_root(pid))


def confined(pid):
    return t.proc_status(pid).get("NoNewPrivs") == "1"


def check_confined(pid, what):
    # A child may do a little set-up (load files, make a dummy hash) before
    # it enters its sandbox; give it a few seconds, then look.
    t.wait_for(lambda: confined(pid) or not t.alive(pid), 5)
    st = t.proc_status(pid)
    if not st:
        t.fail("%s is alive" % what)
        return
    uids = st.get("Uid", "").split()
    gids = st.get("Gid", "").split()
    t.is_(uids, [str(MSA.pw_uid)] * 4, "%s runs as msa (real, effective, "
          "saved, fs uid)" % what)
    t.ok(len(gids) == 4 and "0" not in gids, "%s has no root gid" % what)
    t.ok("0" not in st.get("Groups", "").split(),
         "%s has no root supplementary group" % what)
    t.is_(st.get("NoNewPrivs"), "1", "%s has NoNewPrivs 1" % what)
    t.is_(st.get("Seccomp"), "2", "%s has Seccomp 2 (filter)" % what)
    t.is_(int(st.get("CapEff", "1"), 16), 0, "%s has no effective "
          "capabilities" % what)
    t.is_(int(st.get("CapPrm", "1"), 16), 0, "%s has no permitted "
          "capabilities" % what)
    root = t.proc_root(pid)
    t.isnt(root, "/", "%s is chrooted (its root is not /)" % what)
    if not t.ok(root in ROOTS, "%s is chrooted into the spool or "
                "spool/empty" % what):
        t.diag("root: %s" % root)


# -- the tree ---------------------------------------------------------------
parent_st = t.proc_status(m.pid)
t.is_(parent_st.get("Uid", "").split()[:1], ["0"], "the parent runs as root")
kids = m.children()
t.cmp_ok(len(kids), ">=", 4, "the parent has at least four children "
         "(listener, auth, queue, relay)")
t.is_([p for p in kids if pgid(p) != p], [], "each child leads a process "
      "group of its own")
t.ok(pgid(m.pid) not in kids, "the parent is in none of them")
for p in kids:
    t.wait_for(lambda: confined(p) or not t.alive(p), 5)
t.note("children: " + "; ".join(label(p) for p in kids))
roots = sorted(t.proc_root(p) for p in kids)
t.ok(SPOOL in roots, "one child (the queue) is chrooted into the spool")
t.ok(os.path.join(SPOOL, "empty") in roots,
     "the others are chrooted into spool/empty")
for p in kids:
    check_confined(p, "child " + label(p))

s = m.session(login=ALICE)
m.wait_sessions(1)
sessions = m.sessions()
t.is_(len(sessions), 1, "a connected client has one session process")
for p in sessions:
    check_confined(p, "session " + label(p))
    t.is_(t.proc_root(p), os.path.join(SPOOL, "empty"),
          "the session is chrooted into spool/empty")
t.is_(t.descendants_of(sessions[0]) if sessions else [], [],
      "the session process has no children")
lst = m.listener()
t.ok(sessions and lst and all(pgid(p) == lst for p in sessions),
     "the session is in the listener's process group")
s.close()
m.wait_sessions(0)

# -- a killed child is restarted, service goes on ------------------------------


def service_ok(timeout=15):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
                            t.make_message(subject="after a restart"))
            if last.code == 250:
                return True, last
        except (OSError, t.MsaError) as e:
            last = e
        time.sleep(0.3)
    return False, last


def role_of(pid):
    return t.proc_comm(pid) or "?"


# Each role in turn, found in the live tree each time (killing one child
# may make the parent restart others too).  Children name themselves
# (msa-listener, msa-queue, ...); if they do not, kill them by position.
roles = sorted({role_of(p) for p in leaders()})
by_name = len(roles) == len(leaders()) and "msa" not in roles
t.note("roles: %s" % (roles if by_name else "not named; by position"))
for i in range(len(kids)):
    now = leaders()
    if by_name:
        pick = [p for p in now if role_of(p) == roles[i]]
    else:
        pick = [p for p in now if p not in kids[:i]] or now
    if not pick:
        t.fail("a child %s is running to be killed" % (
            roles[i] if by_name else "#%d" % i))
        continue
    victim = pick[0]
    what = label(victim)
    n_before = len(now)
    t.kill_quietly(victim)
    t.ok(t.wait_for(lambda: not t.alive(victim), 5), "SIGKILL ends %s" % what)
    t.ok(t.wait_for(lambda: not group_exists(victim), 10), "nothing of the "
         "process group of %s is left (killed and reaped)" % what)
    back = t.wait_for(lambda: len(leaders()) >= n_before, 10)
    t.ok(back, "after %s was killed the parent has %d children again" % (
        what, n_before))
    if by_name:
        t.ok(t.wait_for(lambda: [p for p in leaders()
                                 if role_of(p) == roles[i]], 5),
             "a new %s is running" % roles[i])
    good, last = service_ok()
    if not t.ok(good, "after %s was killed a submission with AUTH is queued "
                "again" % what):
        t.diag("last result: %s" % last)
    t.ok(m.running(), "the parent is still running")
    for p in set(leaders()) - set(now):
        check_confined(p, "restarted child " + label(p))

# -- SIGTERM and SIGINT ---------------------------------------------------------
for sig in (signal.SIGTERM, signal.SIGINT):
    name = signal.Signals(sig).name
    if not m.running():
        m.start()
    s = m.session(login=ALICE)  # an idle established session
    pids = m.all_pids()
    start = time.monotonic()
    status = m.stop(timeout=10, sig=sig)
    took = time.monotonic() - start
    t.is_(status, 0, "%s: msa exits 0" % name)
    t.cmp_ok(took, "<=", 5.0, "%s: msa stops within 5 seconds with a "
             "session open" % name)
    t.ok(t.wait_for(lambda: not any(t.alive(p) for p in pids), 3),
         "%s: every msa process is gone" % name)
    t.ok(not any(t.listen_inodes(p) for p, _ in m.listen_ports()),
         "%s: the listen ports are closed" % name)
    s.close()

t.done_testing()
