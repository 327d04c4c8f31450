#!/usr/bin/python3
"""limits.messages_per_hour (issue 3): counted per login across sessions;
over it 450 4.7.1 and nothing queued; other logins are not affected."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(90)
ALICE = ("alice", "alice-pw")
BOB = ("bob", "bob-pw")
m = t.Msa(users={"alice": "alice-pw", "bob": "bob-pw"},
          limits={"messages_per_hour": 2})


def send(login, subject):
    """Final reply of one submission in its own session (MAIL, RCPT or
    the end of data, wherever the limit strikes)."""
    addr = "%s@example.org" % login[0]
    return m.submit(login, addr, ["someone@example.net"],
                    t.make_message(frm=addr, subject=subject))


t.is_(send(ALICE, "one").code, 250, "alice's first message this hour: 250")
t.is_(send(ALICE, "two").code, 250, "alice's second message (another "
      "session): 250")
before = set(m.queued())
rep = send(ALICE, "three")
t.is_(rep.code, 450, "alice's third message within the hour: 450")
t.is_(rep.enh, "4.7.1", "over messages_per_hour: enhanced code 4.7.1")
t.is_(set(m.queued()), before, "the message over the limit is not queued")
t.is_(send(BOB, "bob one").code, 250, "bob is not limited by alice's count")
t.like(m.log(), r"(?i)alice.*(rate|limit|hour)|(rate|limit|hour).*alice",
       "the rate refusal is logged with the login")

t.done_testing()
