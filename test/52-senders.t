#!/usr/bin/python3
"""Sender rights through the daemon (SPEC "Sender rights", issue 3): a
login may use its own address (login@domain when the login has no '@'),
and the `senders:` patterns listed for it - an exact address, "@dom" (any
local part at dom), "local+*@dom" ('*' = any run of characters); domains
match in any case, local parts exactly.  The same rights apply to MAIL FROM
and to the From field; the null sender is allowed but its From must still
be the login's.  Also limits.messages_per_hour at the MAIL command."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(60)

ALICE = ("alice", "alice-pw")
BOB = ("bob", "bob-pw")
CAROL = ("carol@example.net", "carol-pw")
m = t.Msa(users={"alice": "alice-pw", "bob": "bob-pw",
                 "carol@example.net": "carol-pw"},
          senders={"alice": ["alice.extra@example.com", "@family.example",
                             "alice+*@example.org",
                             "list-*-owner@Lists.Example"],
                   "carol@example.net": ["carol@Example.COM"]})


def mail_reply(login, addr):
    """The reply to MAIL FROM:<addr> in a fresh session of login."""
    r = m.session(login=login)
    try:
        return r.cmd("MAIL FROM:<%s>" % addr)
    finally:
        r.close()


def check_mail(login, addr, allowed, why):
    rep = mail_reply(login, addr)
    who = login[0]
    if allowed:
        if not t.is_(rep.code, 250, "%s may send as <%s> (%s): MAIL 250" % (
                who, addr, why)):
            t.diag("reply: %s" % rep)
        return
    ok = t.is_(rep.code, 553, "%s may not send as <%s> (%s): MAIL 553" % (
        who, addr, why))
    ok = t.is_(rep.enh, "5.7.1", "... enhanced code 5.7.1") and ok
    ok = t.ok(addr.lower() in rep.text.lower(),
              "... the reply names <%s>" % addr) and ok
    if not ok:
        t.diag("reply: %s" % rep)


def submit(login, sender, frm, what):
    """A whole message with From: frm; (final reply, new queue ids)."""
    before = set(m.queued())
    data = t.crlf("From: %s\nTo: bob@example.net\nSubject: %s\n\nx\n" % (
        frm, what))
    rep = m.submit(login, sender, ["bob@example.net"], data)
    return rep, set(m.queued()) - before


def check_from(login, sender, frm, allowed, why, code=553):
    """A message with From: frm is queued, or refused with code (553
    5.7.1; None: any 5xx) after the data and not queued."""
    rep, new = submit(login, sender, frm, why)
    env = "<%s>" % sender
    who = login[0]
    if allowed:
        if not t.is_(rep.code, 250, "%s, MAIL FROM %s, 'From: %s' (%s): "
                     "queued" % (who, env, frm, why)):
            t.diag("reply: %s" % rep)
        t.is_(len(new), 1 if rep.code == 250 else 0,
              "... one message in the queue")
        return
    shown = frm.replace("\n", " / ")
    if code is None:
        if not t.is_(rep.cls, 5, "%s, MAIL FROM %s, 'From: %s' (%s): 5xx "
                     "after the data" % (who, env, shown, why)):
            t.diag("reply: %s" % rep)
    else:
        if not t.is_(rep.code, code, "%s, MAIL FROM %s, 'From: %s' (%s): %d "
                     "after the data" % (who, env, shown, why, code)):
            t.diag("reply: %s" % rep)
        t.is_(rep.enh, "5.7.1", "... enhanced code 5.7.1")
    t.is_(new, set(), "... nothing is queued")


# -- MAIL FROM ---------------------------------------------------------------

# The login's own address: login@domain for a login without '@'.
check_mail(ALICE, "alice@example.org", True, "login@domain")
check_mail(ALICE, "alice@EXAMPLE.ORG", True, "the domain in upper case")
check_mail(ALICE, "alice@Example.Org", True, "the domain in mixed case")
check_mail(ALICE, "Alice@example.org", False, "the local part is exact")
check_mail(ALICE, "ALICE@example.org", False, "the local part is exact")
check_mail(ALICE, "alice@mail.example.org", False, "not a subdomain")
check_mail(ALICE, "alice@example.org.evil.example", False,
           "not a longer domain")
check_mail(ALICE, "bob@example.org", False, "another login's address")

# An exact address from senders:.
check_mail(ALICE, "alice.extra@example.com", True, "listed exactly")
check_mail(ALICE, "alice.extra@EXAMPLE.COM", True, "listed, domain in "
           "another case")
check_mail(ALICE, "Alice.Extra@example.com", False, "listed, but the local "
           "part differs in case")
check_mail(ALICE, "alice.extra2@example.com", False, "the listed local part "
           "is not a prefix pattern")
check_mail(ALICE, "xalice.extra@example.com", False, "nor a suffix pattern")

# "@family.example": any local part at that domain.
check_mail(ALICE, "anyone@family.example", True, "'@family.example'")
check_mail(ALICE, "Mixed.Case@FAMILY.EXAMPLE", True, "'@family.example', "
           "any local part, domain in upper case")
check_mail(ALICE, "anyone@sub.family.example", False, "'@family.example' "
           "does not cover subdomains")
check_mail(ALICE, "anyone@family.example.net", False, "'@family.example' "
           "is not a prefix")
check_mail(ALICE, "anyone@notfamily.example", False, "'@family.example' "
           "is not a suffix")

# "alice+*@example.org" and "list-*-owner@Lists.Example".
check_mail(ALICE, "alice+news@example.org", True, "'alice+*@example.org'")
check_mail(ALICE, "alice+a+b.c@EXAMPLE.org", True, "'alice+*@example.org', "
           "any run of characters")
check_mail(ALICE, "Alice+news@example.org", False, "'alice+*': the fixed "
           "part is exact")
check_mail(ALICE, "alice-news@example.org", False, "'alice+*': the '+' is "
           "literal")
check_mail(ALICE, "alice+news@example.com", False, "'alice+*@example.org' "
           "at another domain")
check_mail(ALICE, "list-dev-owner@lists.example", True, "'list-*-owner@"
           "Lists.Example', pattern domain in another case")
check_mail(ALICE, "list-a-b-owner@lists.example", True, "'list-*-owner', "
           "'*' spans dashes")
check_mail(ALICE, "list-dev-owner-x@lists.example", False, "'list-*-owner' "
           "must end in -owner")
check_mail(ALICE, "xlist-dev-owner@lists.example", False, "'list-*-owner' "
           "must start with list-")

# bob has no senders: entry: only his own address.
check_mail(BOB, "bob@example.org", True, "login@domain")
check_mail(BOB, "alice@example.org", False, "alice's address")
check_mail(BOB, "anyone@family.example", False, "alice's pattern is not "
           "bob's")
check_mail(BOB, "bob+news@example.org", False, "alice's '+*' pattern is "
           "not bob's")

# A login that is an address is its own address (no @domain added).
check_mail(CAROL, "carol@example.net", True, "the login itself")
check_mail(CAROL, "carol@EXAMPLE.NET", True, "the login, domain in upper "
           "case")
check_mail(CAROL, "carol@example.org", False, "no login@domain for a login "
           "with '@'")
check_mail(CAROL, "Carol@example.net", False, "the local part is exact")
check_mail(CAROL, "carol@example.com", True, "listed as 'carol@Example.COM'")

# -- From: the same rights ----------------------------------------------------

check_from(ALICE, "alice@example.org", "Alice <alice+news@example.org>",
           True, "From a '+*' address")
check_from(ALICE, "alice@example.org", "anyone@family.example", True,
           "From an '@family.example' address")
check_from(ALICE, "alice@example.org", "alice@EXAMPLE.ORG", True,
           "From with the domain in upper case")
check_from(ALICE, "alice@example.org", "list-x-owner@lists.example", True,
           "From matching 'list-*-owner@Lists.Example'")
check_from(ALICE, "alice@example.org", "Alice <Alice@example.org>", False,
           "From with the local part in another case")
check_from(ALICE, "alice@example.org", "alice@sub.family.example", False,
           "From at a subdomain of '@family.example'")
check_from(ALICE, "alice+news@example.org", "bob@example.org", False,
           "From another login's address")
check_from(CAROL, "carol@example.net", "Carol <carol@example.net>", True,
           "a login with '@' in From")
check_from(CAROL, "carol@example.net", "carol@example.org", False,
           "login@domain is not carol@example.net's")

# What a reader sees is not what counts: only the addresses themselves do.
check_from(ALICE, "alice@example.org",
           '"alice@example.org" <mallory@evil.example>', False,
           "alice's address as the display name of another")
check_from(ALICE, "alice@example.org",
           "mallory@evil.example (alice@example.org)", False,
           "alice's address in a comment")
check_from(ALICE, "alice@example.org", "bob", False,
           "a bare 'bob' is bob@example.org")
check_from(ALICE, "alice@example.org",
           "alice@example.org\nFrom: mallory@evil.example", False,
           "a second From field with another address", code=None)
check_from(ALICE, "alice@example.org",
           "mallory@evil.example\nFrom: alice@example.org", False,
           "alice's From after another one", code=None)

# -- the null sender ----------------------------------------------------------

check_mail(ALICE, "", True, "the null sender <> (read receipts)")
check_from(ALICE, "", "alice@example.org", True, "the null sender with the "
           "login's From")
check_from(ALICE, "", "Family <anyone@family.example>", True, "the null "
           "sender with a From alice may use")
check_from(ALICE, "", "Bob <bob@example.org>", False, "the null sender "
           "with another login's From")
check_from(ALICE, "", "mallory@evil.example", False, "the null sender with "
           "a foreign From")
check_from(CAROL, "", "carol@example.net", True, "the null sender with "
           "the From of a login with '@'")
log = m.log()
t.like(log, r"(?m)^(?=.*(?<![\w\[])553\b)(?=.*\balice\b).*$",
       "refused senders are logged with the login")

# -- limits.messages_per_hour: counted at MAIL, per login, across sessions ----
# (test/42-rate.t covers the basics; here: the limit strikes at MAIL, counts
# every transaction in a session, and spans both listen ports.)

rl = t.Msa(users={"alice": "alice-pw"}, limits={"messages_per_hour": 3})


def one_message(r, n):
    reps = r.mail_transaction("alice@example.org", ["bob@example.net"],
                              t.make_message(subject="rate %d" % n))
    return reps[-1]


r1 = rl.session(login=ALICE)
t.is_(one_message(r1, 1).code, 250, "messages_per_hour 3: the 1st message "
      "is queued")
t.is_(one_message(r1, 2).code, 250, "the 2nd message, same session: queued")
r1.cmd("QUIT")
r1.close()
r2 = rl.session(login=ALICE, kind="implicit")
t.is_(one_message(r2, 3).code, 250, "the 3rd message, another session on "
      "the implicit-TLS port: queued")
before = set(rl.queued())
rep = r2.cmd("MAIL FROM:<alice@example.org>")
t.is_(rep.code, 450, "the 4th MAIL within the hour: 450")
t.is_(rep.enh, "4.7.1", "the 4th MAIL: enhanced code 4.7.1")
t.is_(r2.cmd("RCPT TO:<bob@example.net>").code, 503, "after the refused "
      "MAIL no transaction is open (RCPT: 503)")
t.is_(r2.cmd("NOOP").code, 250, "the session goes on after the 450 (NOOP)")
r2.close()
r3 = rl.session(login=ALICE)
rep = r3.cmd("MAIL FROM:<alice@example.org>")
t.is_(rep.code, 450, "a 5th MAIL in a new session is refused too: 450")
r3.close()
t.is_(set(rl.queued()), before, "nothing is queued over the limit")
t.is_(len(rl.queued()), 3, "exactly the 3 messages within the limit are "
      "queued")

t.done_testing()
