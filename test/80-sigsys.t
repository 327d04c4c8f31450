#!/usr/bin/python3
"""Seccomp proof: in the test-only build (make hooks: -DMSA_TEST_HOOKS,
env MSA_HOOKS), SIGUSR2 makes a sandboxed process call execve("/bin/sh"),
which every role's filter forbids.  For a session, auth, queue, relay and
the listener: the kernel kills that process with SIGSYS (31), the parent
(or, for a session, the listener) logs it, and the daemon recovers: a new
submission is queued, queued messages survive the loss of queue or relay,
a lost session only ends its own client's connection, and the loss of the
listener restarts everything.  The release ./msa has no such hook."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

HOOKS = os.environ.get("MSA_HOOKS", "")
if not HOOKS:
    t.skip_all("MSA_HOOKS is not set (make check builds build/hooks/msa)")
if not os.access(HOOKS, os.X_OK):
    t.bail_out("MSA_HOOKS=%s is not an executable" % HOOKS)

RELEASE = os.path.join(t.TOP, "msa")
HOOK_MARK = b"sandbox-test-hook"
t.MSA = HOOKS  # every Msa below runs the hooks build
t.set_timeout(90)
ALICE = ("alice", "alice-pw")
SIGSYS = int(signal.SIGSYS)


def contains(path, needle):
    with open(path, "rb") as f:
        return needle in f.read()


# -- the hook exists only in the test build ----------------------------------
t.ok(contains(HOOKS, HOOK_MARK), "the hooks build carries the SIGUSR2 "
     "trigger")
if os.access(RELEASE, os.X_OK):
    t.ok(not contains(RELEASE, HOOK_MARK), "the release ./msa does not")
else:
    t.skip("no release ./msa built")

m = t.Msa(users={"alice": "alice-pw"})


def msg(subject):
    return t.make_message(subject=subject, body="token %s\n" % subject)


def submit_ok(subject, timeout=20):
    good, last = m.submit_retry(ALICE, "alice@example.org",
                                ["bob@example.net"], msg(subject),
                                timeout=timeout)
    return good, last


def check_confined(pid, what):
    st = t.proc_status(pid)
    t.is_(st.get("Seccomp"), "2", "%s (pid %s) shows Seccomp: 2" % (what, pid))
    t.is_(st.get("NoNewPrivs"), "1", "%s shows NoNewPrivs: 1" % what)


def hook_ready(pid, role, timeout=5):
    """The role logged that its trigger is armed (after the filter)."""
    return m.wait_log(r"msa\[%d\] .*event=sandbox-test-hook role=%s\b" % (
        pid, role), timeout)


def spool_snapshot():
    """{id: data bytes} of every committed message."""
    return {q.id: q.data for q in m.messages()}


# Messages that must survive the loss of queue and relay.  Deliveries fail
# (nothing listens where the relay is sent), so they stay queued.
base = []
for i in range(3):
    good, rep = submit_ok("before-%d" % i)
    t.ok(good, "message before-%d is queued before any fault (%s)" % (
        i, rep))
    base.append(t.queue_id(rep) if good else None)
snap = spool_snapshot()
t.is_(sorted(snap), sorted(q for q in base if q), "the three messages are "
      "in the spool")

# -- a session -----------------------------------------------------------------
listener = m.role_pid("listener")
victim = m.session(login=ALICE)
m.wait_sessions(1)
spids = m.sessions()
other = m.session(login=ALICE)
m.wait_sessions(2)
t.is_(len(m.sessions()), 2, "two clients have two session processes")
spid = spids[0] if len(spids) == 1 else None
if spid:
    check_confined(spid, "a session")
    t.like(open("/proc/%d/status" % spid).read(), r"Seccomp_filters:\s+2",
           "the session runs under two stacked filters (listener's and "
           "its own)")
    t.ok(hook_ready(spid, "session"), "the session armed its trigger after "
         "its filter")
    mark = m.log_size()
    os.kill(spid, signal.SIGUSR2)
    t.ok(t.wait_for(lambda: not t.alive(spid), 5), "SIGUSR2: the session "
         "process is gone")
    t.ok(m.wait_log(r"proc=listener event=session-died session=\d+ "
                    r"signal=%d\b" % SIGSYS, 5, mark),
         "the listener logs event=session-died signal=31 (SIGSYS)")
    t.ok(victim.at_eof(5), "that client's connection is closed")
    rep = other.cmd("NOOP")
    t.is_(rep.code, 250, "the other client's session goes on (NOOP 250)")
    t.is_(m.role_pid("listener"), listener, "the listener is the same "
          "process")
    t.is_(m.child_deaths(mark), [], "the parent saw no child die")
else:
    t.fail("one session process to work with", "sessions: %s" % spids)
victim.close()
other.cmd("QUIT")
other.close()
good, rep = submit_ok("after-session")
t.ok(good, "after a session's SIGSYS a new submission is queued (%s)" % rep)

# -- auth, queue, relay, then the listener ------------------------------------
for role in ("auth", "queue", "relay", "listener"):
    pid = m.wait_role(role, 10)
    if not pid:
        t.fail("a confined %s process is running" % role)
        continue
    before = {r: m.role_pid(r) for r in ("listener", "auth", "queue",
                                         "relay")}
    check_confined(pid, role)
    t.ok(hook_ready(pid, role), "%s armed its trigger after its filter" %
         role)
    mark = m.log_size()
    os.kill(pid, signal.SIGUSR2)
    t.ok(t.wait_for(lambda: not t.alive(pid), 5), "SIGUSR2: %s (pid %d) "
         "is gone" % (role, pid))
    died = m.wait_log(r"event=child-died child=%s (\S+)" % role, 5, mark)
    t.is_(died.group(1) if died else None, "signal=%d" % SIGSYS,
          "the parent logs event=child-died child=%s signal=31 (SIGSYS)" %
          role)
    # Who must come back: auth alone; queue and relay together; the loss
    # of the listener restarts everything.
    renewed = {"auth": ["auth"], "queue": ["queue", "relay"],
               "relay": ["queue", "relay"],
               "listener": ["listener", "auth", "queue", "relay"]}[role]
    for r in ("listener", "auth", "queue", "relay"):
        if r in renewed:
            new = m.wait_role(r, 10, exclude=(before[r],))
            if t.ok(new, "a new %s process runs after the %s was killed" % (
                    r, role)):
                check_confined(new, "the new " + r)
        else:
            t.is_(m.role_pid(r), before[r], "%s is untouched by the loss "
                  "of %s" % (r, role))
    good, rep = submit_ok("after-%s" % role)
    if t.ok(good, "after %s's SIGSYS a new submission is queued" % role):
        base.append(t.queue_id(rep))
    else:
        t.diag("last result: %s" % rep)
    if role in ("queue", "relay", "listener"):
        now = spool_snapshot()
        t.is_({q: now.get(q) for q in snap}, snap, "after %s's SIGSYS the "
              "earlier messages are in the spool byte for byte" % role)
        lst = m.queue_cmd("list")
        t.ok(lst.returncode == 0 and all(q in lst.stdout for q in snap),
             "the restarted queue process lists them (msa queue list)")
        if lst.returncode != 0:
            t.diag(lst.stdout, lst.stderr)
    t.ok(m.running(), "the parent is still running")
    # A partner may notice the loss and exit on its own (the relay when
    # its queue is gone, queue and auth when the listener is): an exit,
    # never a signal.
    unexpected = [d for d in m.child_deaths(mark)
                  if d != (role, "signal=%d" % SIGSYS)
                  and not d[1].startswith("exit=")]
    t.is_(unexpected, [], "no other child was killed because of the %s's "
          "loss" % role)

t.is_(t.proc_status(m.pid).get("Seccomp"), "0", "the parent itself has no "
      "filter (it forks, chroots and re-reads files)")
queued = m.queued()
t.is_([q for q in base if q not in queued], [], "every acknowledged "
      "message (%d) is still queued at the end" % len(base))
t.ok(m.stop() == 0, "msa stops cleanly with SIGTERM")
t.done_testing()
