#!/usr/bin/python3
"""Disk full: the spool lives on a 2 MB tmpfs.  Two messages are queued,
then a third is sent in two halves and the file system is filled between
them (mid-DATA): the client gets 452 4.3.1 (451 accepted), nothing of the
message stays in tmp/ or queue/, the earlier messages are intact, and no
msa process dies.  While the disk stays full msa keeps answering (banner,
EHLO, a clean 452 for a small message); once space returns (the filler is
deleted) the same message is accepted and queued whole."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
if os.geteuid() != 0:
    t.skip_all("mounting a tmpfs needs root")
ALICE = ("alice", "alice-pw")

m = t.Msa(users={"alice": "alice-pw"}, start=False)
t.mount_tmpfs(m.spool, size="2m")
m.start()
FILLER = os.path.join(m.spool, "filler")  # root's file beside queue/ tmp/
pids = sorted(m.children())


def message(subject, size):
    line = ("%s " % subject) + "x" * 70 + "\n"
    return t.make_message(subject=subject, body=line * (size // len(line)))


# -- two messages that must survive ---------------------------------------------
early = {}
for i in range(2):
    rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
                   message("early-%d" % i, 100 * 1024))
    t.is_(rep.code, 250, "early message %d (100 KB) is queued" % i)
    if rep.code == 250:
        early[t.queue_id(rep)] = None
for q in early:
    early[q] = m.message(q).data
t.ok(all(early.values()), "their data files are in the spool")
t.note("free on the spool before the fill: %d bytes" % t.fs_free(m.spool))

# -- the disk fills up in the middle of DATA -------------------------------------
big = message("too-big", 1200 * 1024)
payload = t.dot_stuff(big) + b".\r\n"
half = len(payload) // 3
r = m.session(login=ALICE)
mark = m.log_size()
reps = [r.cmd("MAIL FROM:<alice@example.org>"), r.cmd("RCPT TO:<bob@example.net>"),
        r.cmd("DATA")]
t.is_([x.code for x in reps], [250, 250, 354], "MAIL, RCPT and DATA are "
      "accepted while there is room")
r.send(payload[:half])
created = m.wait_log(r"event=create id=([0-9a-f]{16})", 5, mark)
qid = created.group(1) if created else None
# Let the first part reach the file, then take every byte that is left.
t.wait_for(lambda: any(os.path.getsize(os.path.join(m.spool, "tmp", f)) > 0
                       for f in m.tmp_files()), 5)
filled = t.fill_fs(FILLER)
t.note("filler: %d bytes, %d left" % (filled, t.fs_free(m.spool)))
t.ok(t.fs_free(m.spool) < 64 * 1024, "the spool's file system is full")
r.send(payload[half:])
final = r.reply(timeout=20)
t.like(str(final), r"^45[12] ", "the message that does not fit gets a 4xx "
       "reply after its end of data (%s)" % final)
t.is_((final.code, final.enh), (452, "4.3.1"),
      "... 452 4.3.1 Insufficient system storage")
t.is_(r.cmd("NOOP").code, 250, "the session goes on after the 452")
r.cmd("QUIT")
r.close()

t.ok(t.wait_for(lambda: not m.tmp_files(), 5), "nothing half-written stays "
     "in tmp/ (%s)" % m.tmp_files())
if qid:
    t.ok(not [f for f in m.queue_files() if f.startswith(qid)],
         "nothing of the rejected message (%s) is in queue/" % qid)
else:
    t.fail("the log names the rejected message's queue id")
t.is_(sorted(m.queued()), sorted(early), "only the two early messages are "
      "queued")
t.is_({q: m.message(q).data for q in early}, early, "the early messages are "
      "intact byte for byte")
t.unlike(m.spool_bytes(), r"too-big", "no byte of the rejected message is "
         "in the spool")

# -- still full: msa keeps answering ---------------------------------------------
# The aborted file gave its blocks back: take them too.
filled += t.fill_fs(FILLER + "2")
t.ok(t.fs_free(m.spool) < 64 * 1024, "the file system is full again")
s = m.raw()
t.is_(s.reply().code, 220, "while the disk is full a new client gets the "
      "banner")
t.is_(s.ehlo().code, 250, "... and EHLO")
s.close()
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
               message("small-while-full", 64 * 1024))
t.like(str(rep), r"^45[12] ", "a 64 KB message while the disk is full: a "
       "temporary failure (%s)" % rep)
t.ok(t.wait_for(lambda: not m.tmp_files(), 5), "... and tmp/ is empty again")

# -- room for the data but not for the envelope (the commit fails) -----------
# Free exactly eight pages: the data file (about 30 KB once msa added its
# headers) takes them all, so writing the envelope at commit time fails.
PAGE = os.statvfs(m.spool).f_frsize
with open(FILLER, "r+b") as f:
    f.truncate(os.path.getsize(FILLER) - 8 * PAGE)
t.note("free for the commit case: %d bytes" % t.fs_free(m.spool))
mark = m.log_size()
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"],
               message("no-room-for-envelope", 8 * PAGE - 2500))
t.like(str(rep), r"^45[12] ", "data that fits but an envelope that does not:"
       " a temporary failure (%s)" % rep)
t.is_((rep.code, rep.enh), (452, "4.3.1"), "... 452 4.3.1")
t.like(m.log()[mark:], r"op=(commit|write)", "the session logged which "
       "step ran out of space")
t.ok(t.wait_for(lambda: not m.tmp_files(), 5), "nothing stays in tmp/ (%s)"
     % m.tmp_files())
t.is_(sorted(m.queued()), sorted(early), "still only the two early messages "
      "are queued")
t.unlike(m.spool_bytes(), r"no-room-for-envelope", "no byte of it is in the "
         "spool")

# -- space returns ---------------------------------------------------------------
os.unlink(FILLER)
os.unlink(FILLER + "2")
t.cmp_ok(t.fs_free(m.spool), ">", 1200 * 1024, "deleting the filler frees "
         "the space")
rep = m.submit(ALICE, "alice@example.org", ["bob@example.net"], big)
t.is_(rep.code, 250, "once space returns the same message is accepted "
      "(%s)" % rep)
qid2 = t.queue_id(rep)
if qid2:
    t.is_(m.message(qid2).body, t.body_of(big), "and queued whole")
else:
    t.fail("and queued whole")
t.is_(sorted(m.queued()), sorted(list(early) + ([qid2] if qid2 else [])),
      "the queue holds the two early messages and the new one")

# -- nobody died -----------------------------------------------------------------
t.is_(m.child_deaths(), [], "no msa child died (the parent logged no "
      "child-died)")
t.is_(sorted(m.children()), pids, "the same four children are running")
t.unlike(m.log(), r"level=(fatal|crit)", "no fatal error was logged")
errs = re.findall(r"event=(envelope-write-failed|queue-error)[^\n]*",
                  m.log())
t.note("storage errors logged: %d (%s)" % (len(errs), ", ".join(
    sorted(set(errs)))))
t.is_(m.stop(), 0, "msa stops cleanly")
t.done_testing()
