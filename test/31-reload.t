#!/usr/bin/python3
"""SIGHUP: a new user in the password file, a removed user, new sender
rights and a new certificate are picked up, while an established session
goes on undisturbed; a broken certificate on reload keeps the old one."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)
ALICE = ("alice", "alice-pw")

m = t.Msa(users={"alice": "alice-pw", "bob": "bob-pw"}, start=False,
          senders={"alice": ["alice+*@example.org"]})
m.cert, m.key = t.make_cert(m.dir, "first")
m.write_config()
m.start()
old_der = t.cert_der(m.cert)
parent = m.pid


def login(user, password):
    try:
        r = m.session()
    except (OSError, t.MsaError):
        return None
    try:
        return r.auth_plain(user, password).code
    finally:
        r.close()


t.is_(login("carol", "carol-pw"), 535, "before the reload carol is unknown")
t.is_(login("bob", "bob-pw"), 235, "before the reload bob logs in")

# An established session, in the middle of a transaction.
s1 = m.session(login=ALICE)
t.is_(s1.sock.getpeercert(binary_form=True), old_der,
      "the first session uses the first certificate")
t.is_(s1.cmd("MAIL FROM:<alice@example.org>").code, 250,
      "the established session has started a transaction")

# New users, new rights, new certificate; then SIGHUP.
m.write_users([t.htpasswd_line("alice", "alice-pw"),
               t.htpasswd_line("carol", "carol-pw")])
new_cert, new_key = t.make_cert(m.dir, "second")
os.replace(new_cert, m.cert)
os.replace(new_key, m.key)
new_der = t.cert_der(m.cert)
t.isnt(new_der, old_der, "(the test made a different certificate)")
m.overrides["senders"] = {"alice": ["alice+*@example.org",
                                    "alias@example.org"]}
m.write_config()
m.hup()

t.ok(t.wait_for(lambda: login("carol", "carol-pw") == 235, 10, 0.3),
     "after SIGHUP a new user in the password file logs in")
t.is_(login("bob", "bob-pw"), 535, "after SIGHUP a removed user is refused")
t.ok(m.running() and m.pid == parent, "the daemon was reloaded, not "
     "restarted")

# The established session goes on.
t.is_(s1.cmd("NOOP").code, 250, "the established session answers NOOP after "
      "the reload")
t.is_(s1.cmd("RCPT TO:<bob@example.net>").code, 250,
      "the established session continues its transaction")
rep = s1.cmd("DATA")
t.is_(rep.code, 354, "the established session gets DATA")
s1.send(t.dot_stuff(t.make_message(subject="across the reload")) + b".\r\n")
rep = s1.reply()
t.is_(rep.code, 250, "a message sent across the reload is queued")
t.is_(s1.cmd("QUIT").code, 221, "the established session ends normally")
s1.close()

for kind in ("starttls", "implicit"):
    r = m.session(kind=kind)
    t.is_(r.sock.getpeercert(binary_form=True), new_der,
          "after SIGHUP new %s connections get the new certificate" % kind)
    r.close()

r = m.session(login=ALICE)
rep = r.cmd("MAIL FROM:<alias@example.org>")
t.is_(rep.code, 250, "after SIGHUP a new sender right is in force")
r.close()

# A broken certificate on reload: the daemon keeps serving the last good one.
with open(m.cert, "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
m.hup()
time.sleep(1.5)
t.ok(m.running(), "a reload with a broken certificate does not stop msa")
try:
    r = m.session(login=ALICE)
    t.is_(r.sock.getpeercert(binary_form=True), new_der,
          "after a failed reload the last good certificate is served")
    r.close()
except (OSError, t.MsaError) as e:
    t.fail("after a failed reload the last good certificate is served",
           str(e))

t.done_testing()
