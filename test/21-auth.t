#!/usr/bin/python3
"""Password file and AUTH: $2y$ (htpasswd -B), $2b$ (msa passwd) and $2a$
hashes accepted, comments ignored, long AUTH lines, and throttling: after
auth.max_failures failures from one address, 421 4.7.0 and close, even for
the right password; other addresses are not affected."""

import os
import smtplib
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)
MAX = 3

m = t.Msa(start=False, auth={"max_failures": MAX})
ylin = t.htpasswd_line("yuser", "y-secret")
blin = t.msa_passwd_line("buser", "b-secret")
alin = t.htpasswd_line("auser", "a-secret").replace("$2y$", "$2a$", 1)
t.like(ylin, r"^yuser:\$2y\$", "htpasswd -B makes a $2y$ hash")
t.like(blin, r"^buser:\$2b\$12\$", "msa passwd makes a $2b$12$ hash")
m.write_users(["# a comment line", "", ylin, "   # indented comment",
               blin, alin, "pw-user:" + t.htpasswd_line(
                   "x", "p:ss word é").split(":", 1)[1]])
m.start()


def login(user, password, source=None, mech="PLAIN"):
    """Reply to AUTH in a fresh STARTTLS session (None if refused earlier:
    then the Reply that refused, e.g. a 421 banner)."""
    r = t.Raw(m.port["starttls"], source=source)
    try:
        rep = r.reply()
        if rep.code != 220:
            return rep
        r.ehlo()
        if r.cmd("STARTTLS").code != 220:
            return r.reply()
        r.starttls()
        r.ehlo()
        if mech == "PLAIN":
            return r.auth_plain(user, password)
        rep = r.cmd("AUTH LOGIN")
        rep = r.cmd(t.b64(user)) if rep.code == 334 else rep
        return r.cmd(t.b64(password)) if rep.code == 334 else rep
    finally:
        r.close()


t.is_(login("yuser", "y-secret").code, 235, "a $2y$ hash (htpasswd -B) is "
      "accepted: 235")
t.is_(login("yuser", "y-secret", mech="LOGIN").code, 235,
      "the $2y$ user logs in with AUTH LOGIN too")
t.is_(login("buser", "b-secret").code, 235, "a $2b$ hash (msa passwd) is "
      "accepted: 235")
t.is_(login("auser", "a-secret").code, 235, "a $2a$ hash is accepted: 235")
t.is_(login("pw-user", "p:ss word é").code, 235,
      "a password with a colon, a space and UTF-8 works")
t.is_(login("Yuser", "y-secret", source="127.0.0.9").code, 535,
      "login names are case-sensitive (Yuser is not yuser): 535")
t.is_(login("# a comment line", "x", source="127.0.0.9").code, 535,
      "a comment line is not a user")

# smtplib, as a mail client would do it.
try:
    s = m.smtp(login=("yuser", "y-secret"))
    t.pass_("smtplib logs in with STARTTLS and AUTH")
    s.quit()
except (smtplib.SMTPException, OSError, ssl.SSLError) as e:
    t.fail("smtplib logs in with STARTTLS and AUTH", str(e))

# A long AUTH line (RFC 4954: up to 12288 octets) is read whole.
r = m.session(source="127.0.0.8")
rep = r.auth_plain("yuser", "x" * 8000)
t.ok(rep.code in (535, 501), "an 8000-octet password in AUTH PLAIN gets an "
     "AUTH answer (535/501), not a line-length error")
t.is_(r.cmd("NOOP").code, 250, "the session goes on after the long AUTH line")
r.close()

# -- throttling (from 127.0.0.2 only) ----------------------------------------
SRC = "127.0.0.2"
replies = []
r = m.session(source=SRC)
for i in range(MAX - 1):
    replies.append(r.auth_plain("yuser", "wrong-%d" % i))
r.cmd("QUIT")
r.close()
t.is_([x.code for x in replies], [535] * (MAX - 1),
      "failures 1..%d from one address: 535 each" % (MAX - 1))

r = m.session(source=SRC)  # a new session: the count is per address
rep = r.auth_plain("yuser", "wrong-last")
t.ok(rep.code in (535, 421), "failure %d (max_failures) in a new session: "
     "535 or already 421" % MAX)
if rep.code == 535:
    rep = r.auth_plain("yuser", "wrong-after")
t.is_(rep.code, 421, "after max_failures failures: 421")
t.is_(rep.enh, "4.7.0", "throttled: enhanced code 4.7.0")
t.ok(r.at_eof(), "the server closes the connection after the 421")
r.close()

rep = login("yuser", "y-secret", source=SRC)
t.is_(rep.code, 421, "a throttled address gets 421 even with the right "
      "password")
t.is_(rep.enh, "4.7.0", "... with enhanced code 4.7.0")
rep = login("buser", "b-secret", source=SRC)
t.is_(rep.code, 421, "a throttled address gets 421 for every login")

rep = login("yuser", "y-secret", source="127.0.0.3")
t.is_(rep.code, 235, "another address is not throttled: 235")
rep = login("yuser", "y-secret")
t.is_(rep.code, 235, "127.0.0.1 (other address) still logs in")

t.like(m.log(), r"(?im)^.*event=\S*auth\S*.*(fail|throttl)",
       "the log has auth events for the failures")

t.done_testing()
