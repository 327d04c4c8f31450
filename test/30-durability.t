#!/usr/bin/python3
"""Durability: a message acknowledged with 250 survives SIGKILL of every msa
process and a restart, byte for byte; a session killed in the middle of DATA
leaves nothing in tmp/ or queue/; a daemon killed mid-DATA leaves nothing
after the restart; spool modes are safe."""

import os
import pwd
import signal
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)
ALICE = ("alice", "alice-pw")
MSA_UID = pwd.getpwnam("msa").pw_uid
m = t.Msa(users={"alice": "alice-pw"})

# -- spool layout and modes ---------------------------------------------------
for sub, mode in (("queue", 0o700), ("tmp", 0o700)):
    st = os.stat(os.path.join(m.spool, sub))
    t.is_(stat.S_IMODE(st.st_mode), mode, "spool/%s has mode %o" % (sub, mode))
    t.is_(st.st_uid, MSA_UID, "spool/%s belongs to the msa user" % sub)
st = os.stat(m.spool)
t.is_(st.st_mode & 0o022, 0, "the spool directory is not group/world "
      "writable")

# -- 250, then SIGKILL of everything -------------------------------------------
body = t.crlf("Line one\nline two with 8-bit: \xe9t\xe9\n\n.hidden dot\nend\n")
msg = t.make_message(subject="durable", body=body)
r = m.session(login=ALICE)
reps = r.mail_transaction("alice@example.org",
                          ["bob@example.net", "carol@example.com"], msg)
final = reps[-1]
pids = m.all_pids()
m.kill_all()  # no QUIT, no goodbye: the whole daemon dies at once
r.close()
t.is_(final.code, 250, "the message is acknowledged with 250")
qid = t.queue_id(final)
t.ok(not any(t.alive(p) for p in pids), "every msa process is gone after "
     "SIGKILL (%d processes)" % len(pids))
files = m.queue_files()
t.ok(qid and qid + ".data" in files and qid + ".env" in files,
     "after SIGKILL, ID.data and ID.env are in the spool")
q = m.message(qid) if qid else None
data_before = q.data if q else None
if q and q.data is not None:
    t.is_(q.body, body, "after SIGKILL, the body is intact byte for byte")
    st = os.stat(os.path.join(m.spool, "queue", qid + ".data"))
    t.is_(st.st_mode & 0o077, 0, "the data file is private to its owner")
else:
    t.fail("after SIGKILL, the body is intact byte for byte", "no data file")
    t.skip("no data file")
if q and q.env is not None:
    t.like(q.env, r"bob@example\.net", "after SIGKILL, the envelope has the "
           "first recipient")
    t.like(q.env, r"carol@example\.com", "... and the second")
else:
    t.skip("no envelope", 2)

m.start()
t.ok(m.running(), "msa starts again on the same spool")
t.ok(qid in m.queued(), "after the restart, the message is still queued")
q2 = m.message(qid) if qid else None
t.is_(q2.data if q2 else None, data_before,
      "after the restart, the data file is unchanged")
t.is_(m.tmp_files(), [], "after the restart, tmp/ is empty")

# -- a session killed in the middle of DATA -------------------------------------
before = set(m.queued())
r = m.session(login=ALICE)
for cmd, want in (("MAIL FROM:<alice@example.org>", 250),
                  ("RCPT TO:<bob@example.net>", 250), ("DATA", 354)):
    rep = r.cmd(cmd)
    if rep.code != want:
        t.diag("%s: %s" % (cmd, rep))
r.send(t.make_message(subject="interrupted",
                      body=b"partial body\r\n" * 50))
t.ok(t.wait_for(lambda: m.tmp_files(), 5),
     "(while DATA runs, the message is being written under tmp/)")
sessions = m.sessions()
t.is_(len(sessions), 1, "one session process serves the client")
for pid in sessions:
    os.kill(pid, signal.SIGKILL)
t.ok(r.at_eof(5), "the client sees the connection close")
r.close()
t.ok(t.wait_for(lambda: not m.tmp_files(), 5),
     "a session killed mid-DATA leaves nothing in tmp/")
if m.tmp_files():
    t.diag("tmp/: %s" % m.tmp_files())
t.is_(set(m.queued()), before, "a session killed mid-DATA queues nothing")
t.is_(sorted(f for f in m.queue_files() if f.endswith(".data")),
      sorted(q + ".data" for q in before),
      "no stray data file in queue/ either")
t.ok(m.running(), "the daemon survives the death of a session")
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
               t.make_message(subject="after the killed session"))
t.is_(rep.code, 250, "the next session queues a message normally")

# -- the whole daemon killed mid-DATA -------------------------------------------
before = set(m.queued())
r = m.session(login=ALICE)
for cmd in ("MAIL FROM:<alice@example.org>", "RCPT TO:<bob@example.net>",
            "DATA"):
    r.cmd(cmd)
r.send(t.make_message(subject="interrupted again",
                      body=b"partial\r\n" * 50))
t.wait_for(lambda: m.tmp_files(), 5)
m.kill_all()
r.close()
t.is_(set(m.queued()), before, "killing msa mid-DATA commits nothing")
# A data file without its envelope (a crash between the two renames).
stray = os.path.join(m.spool, "queue", "0123456789abcdef.data")
with open(stray, "wb") as f:
    f.write(b"From: x\r\n\r\nhalf-committed\r\n")
os.chown(stray, MSA_UID, -1)
os.chmod(stray, 0o600)
m.start()
t.is_(m.tmp_files(), [], "after the restart, the partial message is gone "
      "from tmp/")
t.ok(not os.path.exists(stray), "after the restart, a data file without an "
     "envelope is removed")
t.is_(set(m.queued()), before, "after the restart, the committed messages "
      "are all still queued")
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
               t.make_message(subject="after the restart"))
t.is_(rep.code, 250, "after the restart, a new message is queued")

t.done_testing()
