#!/usr/bin/python3
"""Group commit under fire: 8 clients submit at once while the queue process
is SIGKILLed at random moments, commits in flight (the parent restarts it
with the relay); every message acknowledged with 250 is in the spool
afterwards, data and envelope, body intact, and still is after a full
restart.  The queue's sync workers are started when commits wait and retired
when idle, are confined like the queue process, run in its process group and
do not outlive it: the parent kills the group of a dead queue process and
restarts it only once the group is empty, so no worker writes into tmp/
after the next queue process emptied it."""

import os
import pwd
import random
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(300)
ALICE = ("alice", "alice-pw")
CLIENTS = 8
KILLS = 4  # a 5th death within a minute delays the restart by 30 s
PER_SESSION = 10
SYNC_IDLE = 10  # QUEUE_SYNC_IDLE_S in queue.c
CLIENT_TIMEOUT = 6  # a commit lost with its queue process is never answered
MSA_UID = pwd.getpwnam("msa").pw_uid

dead = t.free_port()
m = t.Msa(users={"alice": "alice-pw"},
          limits={"sessions": 200, "sessions_per_ip": 200},
          # Everything stays queued: the smarthost port is closed and the
          # first retry is an hour away.
          relay={"mode": "smarthost",
                 "smarthost": {"host": "127.0.0.1", "port": dead,
                               "tls": "none"},
                 "retry": {"first": "1h", "max": "2h", "give_up": "5d"}})
SPOOL = os.path.realpath(m.spool)


def pgid(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def queue_pid():
    """The queue process: the parent's child chrooted into the spool that
    leads its own process group (an orphaned sync worker of a killed queue
    is briefly the parent's child too, until the parent reaps it)."""
    for p in m.children():
        if t.proc_root(p) == SPOOL and pgid(p) == p and \
                t.proc_status(p).get("Seccomp") == "2":
            return p
    return None


def workers_of(pid):
    return t.children_of(pid)


# -- the sync workers --------------------------------------------------------
qpid = t.wait_for(queue_pid, 10)
t.ok(qpid, "the queue process is running and confined")
time.sleep(0.5)
t.is_(workers_of(qpid) if qpid else None, [],
      "an idle queue process has no sync worker (they start on demand)")
first = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
                 t.make_message(subject="first"))
t.is_(first.code, 250, "a first message is acknowledged")
workers = t.wait_for(lambda: [w for w in workers_of(qpid)
                              if t.proc_status(w).get("Seccomp") == "2"]
                     if qpid else [], 5) or []
t.cmp_ok(len(workers), ">=", 1, "the queue process has started a sync worker "
         "for it")
t.is_(pgid(qpid), qpid, "the queue process leads a process group of its own")
t.is_([w for w in workers if pgid(w) != qpid], [],
      "its sync workers are in the queue's process group")
for w in workers:
    st = t.proc_status(w)
    good = (st.get("Seccomp") == "2" and st.get("NoNewPrivs") == "1" and
            st.get("Uid", "").split() == [str(MSA_UID)] * 4 and
            t.proc_root(w) == SPOOL and int(st.get("CapEff", "1"), 16) == 0)
    if not t.ok(good, "sync worker %d is confined like the queue process "
                "(uid msa, chroot, NoNewPrivs, Seccomp 2)" % w):
        t.diag("status: %s root %s" % (
            {k: st.get(k) for k in ("Uid", "Seccomp", "NoNewPrivs",
                                    "CapEff")}, t.proc_root(w)))

# -- the storm ----------------------------------------------------------------
acked = {}  # queue id -> body
lock = threading.Lock()
stop = threading.Event()
failures = {"refused": 0, "lost": 0}


def body_for(n, i):
    token = "%d-%d-%08x" % (n, i, random.getrandbits(32))
    lines = ["message %s line %02d %s" % (token, k, "x" * 40)
             for k in range(40)]
    return ("\r\n".join(lines) + "\r\n").encode()


def client(n):
    i = 0
    while not stop.is_set():
        try:
            r = m.session(login=ALICE, timeout=CLIENT_TIMEOUT)
        except (OSError, t.MsaError):
            time.sleep(0.1)
            continue
        try:
            for _ in range(PER_SESSION):
                if stop.is_set():
                    break
                i += 1
                body = body_for(n, i)
                msg = t.make_message(subject="storm %d-%d" % (n, i),
                                     body=body)
                final = r.mail_transaction("alice@example.org",
                                           ["bob@example.net"], msg)[-1]
                if final.code == 250 and t.queue_id(final):
                    with lock:
                        acked[t.queue_id(final)] = body
                    continue
                with lock:
                    failures["refused"] += 1
                if final.code is None or final.code == 421:
                    break
        except (OSError, ValueError):
            with lock:
                failures["lost"] += 1
        finally:
            r.close()


def acked_count():
    with lock:
        return len(acked)


threads = [threading.Thread(target=client, args=(n,), daemon=True)
           for n in range(CLIENTS)]
for th in threads:
    th.start()
t.ok(t.wait_for(lambda: acked_count() >= 2 * CLIENTS, 30),
     "the clients get messages acknowledged before the first kill")

killed = 0
victims = []
for k in range(KILLS):
    pid = t.wait_for(queue_pid, 15)
    if not pid:
        break
    # Wait until commits flow through this queue process, then strike at a
    # random moment: with 8 clients some commit is always half done.
    base = acked_count()
    t.wait_for(lambda: acked_count() >= base + CLIENTS, 20)
    time.sleep(random.uniform(0.0, 0.4))
    victims.append((pid, workers_of(pid)))
    t.kill_quietly(pid)
    killed += 1
    t.wait_for(lambda: queue_pid() not in (None, pid), 15)

# A last stretch of traffic through the final queue process.
base = acked_count()
t.wait_for(lambda: acked_count() >= base + 2 * CLIENTS, 30)
stop.set()
for th in threads:
    th.join(CLIENT_TIMEOUT * (PER_SESSION + 2))

t.is_(killed, KILLS, "the queue process was SIGKILLed %d times under load" %
      KILLS)
# The parent logs the death of the queue or of its relay, whichever it
# notices first, and restarts both: count the queue processes it started.
starts = re.findall(r"event=queue-start ", m.log())
if not t.is_(len(starts), 1 + KILLS, "the parent restarted the queue "
             "process after each kill"):
    t.diag("victims: %s" % victims,
           "\n".join(ln for ln in m.log().splitlines()
                     if "child-died" in ln or "queue-start" in ln))
t.ok(m.running(), "the parent is still running after the storm")
t.ok(all(t.wait_for(lambda: not any(t.alive(p) for p in [v] + ws), 10)
         for v, ws in victims),
     "the sync workers of each killed queue process are gone too")


def zombies_of_parent():
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and
            (t.proc_stat(int(p)) or ("", "", 0))[1:3] == ("Z", m.pid)]


t.wait_for(lambda: not zombies_of_parent(), 5)
t.is_(zombies_of_parent(), [], "the parent reaped every orphaned sync worker "
      "(no zombie left reparented to it)")
t.ok(not any(th.is_alive() for th in threads), "every client finished")


def lingering(timeout=10):
    """Files of tmp/ that stay there: strays.  tmp/ need not be empty at a
    given moment: a session's tmp/ID goes when the session does, and the
    queue process records a delivery attempt by writing tmp/ID.env and
    renaming it into queue/ at once (right after a restart it tries every
    message it loaded).  A file that nothing will rename or remove (a sync
    worker of a killed queue process writing after its successor emptied
    tmp/) is still there however long one waits."""
    first = set(m.tmp_files())
    t.wait_for(lambda: not first & set(m.tmp_files()), timeout)
    return sorted(first & set(m.tmp_files()))


t.is_(lingering(), [], "after the storm no file stays in tmp/ (no stray "
      "temporary envelope or data of a killed queue process)")
qpid = queue_pid()
t.ok(qpid and t.wait_for(lambda: not workers_of(qpid), SYNC_IDLE + 10),
     "idle sync workers are retired after %d s" % SYNC_IDLE)


def present(qid, body):
    q = m.message(qid)
    return q.data is not None and q.env is not None and q.body == body


with lock:
    snapshot = dict(acked)
missing = [q for q, b in snapshot.items() if not present(q, b)]
queued = set(m.queued())
t.note("acknowledged %d, present %d, in the spool %d (committed without an "
       "answer: %d); refused or unanswered %d, connections lost %d" % (
           len(snapshot), len(snapshot) - len(missing), len(queued),
           len(queued - set(snapshot)), failures["refused"],
           failures["lost"]))
t.cmp_ok(len(snapshot), ">=", 8 * CLIENTS, "many messages were acknowledged "
         "during the storm")
t.cmp_ok(failures["refused"] + failures["lost"], ">", 0, "some submissions "
         "were in flight when the queue process died (4xx or no answer)")
t.is_(missing, [], "every acknowledged message is in the spool (ID.data and "
      "ID.env, body intact) after the storm")
t.is_([f for f in m.queue_files() if f.endswith(".bad")], [],
      "no envelope was set aside as corrupt")

# -- a full restart -------------------------------------------------------------
t.is_(m.stop(), 0, "msa stops cleanly after the storm")
mark = m.log_size()
m.start()
t.ok(m.running(), "msa starts again on the same spool")
# The queue process empties tmp/ and loads the spool before it says so.
start = m.wait_log(r"event=queue-start messages=(\d+)", 15, mark)
t.ok(start and int(start.group(1)) >= len(snapshot),
     "the restarted queue process loads them all (%s)" % (
         start.group(0) if start else "no queue-start line"))
queued = set(m.queued())
missing = [q for q, b in snapshot.items()
           if q not in queued or not present(q, b)]
t.note("after the restart: acknowledged %d, present %d" % (
    len(snapshot), len(snapshot) - len(missing)))
t.is_(missing, [], "every acknowledged message is still queued after a full "
      "restart, body intact")
# No sync worker of a killed queue process may write into tmp/ after the
# next queue process emptied it: not even a temporary envelope.
t.is_(lingering(), [], "after the restart no file stays in tmp/ (no stray "
      "temporary envelope or data)")
lst = t.run_msa("-c", m.cfgpath, "queue", "list")
t.ok(lst.returncode == 0 and all(q in lst.stdout for q in snapshot),
     "msa queue list shows every acknowledged message")
batches = [int(x) for x in re.findall(r"event=commit-batch messages=(\d+)",
                                      m.log())]
t.note("largest commit batch: %s" % (max(batches) if batches else "not "
                                     "logged at this level"))
t.done_testing()
