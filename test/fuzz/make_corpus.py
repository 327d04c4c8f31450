#!/usr/bin/python3
"""Write the seed corpora of msa's fuzz targets into test/fuzz/corpus/.

The seeds are small, realistic inputs: SMTP lines as clients send them,
header sections as common mail clients write them, YAML configurations,
envelope files, DNS answers built here byte by byte.  Each starts with the
control byte(s) its target expects (see the comment at the top of each
test/fuzz/fuzz_*.c).  Run it again after changing a seed; the files are
committed, so running the fuzzers does not need Python.
"""
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def b64(s):
    import base64
    return base64.b64encode(s).decode()


def crlf(text):
    """Lines written with \\n in this file, CR LF on the wire."""
    return text.replace("\n", "\r\n").encode()


# ------------------------------------------------------------------ #
# smtp_cmd: control byte (0x80: SIZE limit 25M) + one command line

SMTP_LINES = {
    "ehlo": "EHLO laptop.example.org",
    "ehlo_literal": "EHLO [192.0.2.7]",
    "ehlo_v6": "EHLO [IPv6:2001:db8::7]",
    "helo": "HELO alice-pc",
    "mail": "MAIL FROM:<alice@example.org>",
    "mail_params": "MAIL FROM:<alice@example.org> SIZE=1532 BODY=8BITMIME",
    "mail_auth": "MAIL FROM:<alice+lists@example.org> AUTH=<> BODY=7BIT",
    "mail_null": "MAIL FROM:<>",
    "mail_space": "MAIL FROM: <alice@example.org>",
    "mail_quoted": 'MAIL FROM:<"alice smith"@example.org>',
    "mail_quoted_pair": 'mail from:<"a\\"b"@example.org> size=0',
    "mail_route": "MAIL FROM:<@relay.example,@b.example:alice@example.org>",
    "mail_bare": "MAIL FROM:<alice>",
    "mail_literal": "MAIL FROM:<alice@[192.0.2.1]>",
    "rcpt": "RCPT TO:<bob@example.net>",
    "rcpt_postmaster": "RCPT TO:<Postmaster>",
    "rcpt_v6": "RCPT TO:<bob@[IPv6:2001:db8::1]>",
    "rcpt_param": "RCPT TO:<bob@example.net> NOTIFY=NEVER",
    "auth_plain": "AUTH PLAIN " + b64(b"\0alice\0correct horse battery"),
    "auth_plain_authzid": "AUTH PLAIN " + b64(b"alice\0alice\0secret"),
    "auth_plain_empty": "AUTH PLAIN =",
    "auth_login": "AUTH LOGIN " + b64(b"alice"),
    "auth_login_bare": "AUTH LOGIN",
    "auth_cram": "AUTH CRAM-MD5",
    "b64_password": b64(b"s3cr3t p4ssw0rd!"),
    "b64_pad1": b64(b"ab"),
    "b64_pad2": b64(b"a"),
    "cancel": "*",
    "data": "DATA",
    "rset": "RSET",
    "noop": "NOOP hello",
    "quit": "QUIT",
    "help": "HELP",
    "vrfy": "VRFY bob",
    "expn": "EXPN staff",
    "starttls": "STARTTLS",
    "tab": "MAIL\tFROM:<alice@example.org>\t",
    "lower": "rcpt to:<bob@example.net>\r",
}

# ------------------------------------------------------------------ #
# Header sections as common clients write them

THUNDERBIRD = """Message-ID: <5b1e0c6a-1c2d-4e3f-9a8b-7c6d5e4f3a2b@example.org>
Date: Sun, 29 Nov 2026 18:30:00 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Content-Language: en-US
To: Bob Example <bob@example.net>
From: Alice Example <alice@example.org>
Subject: lunch?
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 7bit
"""

OUTLOOK = """From: "Alice Example" <alice@example.org>
To: "'Bob'" <bob@example.net>
Cc: <carol@example.com>, "Dave, Jr." <dave@example.com>
Subject: RE: quarterly report
Date: Sun, 29 Nov 2026 18:30:00 +0100
Message-ID: <000001db1234$abcdef01$23456789@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative;
\tboundary="----=_NextPart_000_0001_01DB1234.ABCDEF01"
X-Mailer: Microsoft Outlook 16.0
Thread-Index: AdtCq1234567890abcdefABCDEF==
Content-Language: de-ch
"""

APPLE = """From: Alice Example <alice@example.org>
Content-Type: text/plain;
\tcharset=us-ascii
Content-Transfer-Encoding: 7bit
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))
Subject: test
Message-Id: <A1B2C3D4-E5F6-7890-ABCD-EF0123456789@example.org>
Date: Sun, 29 Nov 2026 18:30:00 +0100
To: bob@example.net
X-Mailer: Apple Mail (2.3774.600.62)
"""

MUTT = """Date: Sun, 29 Nov 2026 18:30:00 +0100
From: alice
To: bob, carol@example.com
Cc: dave (the boss)
Bcc: secret
Subject: bare addresses
Message-ID: <20261129173000.GA1234@laptop>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Disposition: inline
User-Agent: Mutt/2.2.9 (2022-11-12)
"""

GIT = """From: Alice Example <alice@example.org>
To: dev@lists.example.net
Cc: Bob <bob@example.net>,
 Carol <carol@example.com>
Subject: [PATCH v2 1/3] relay: fix the reply parser
Date: Sun, 29 Nov 2026 18:30:00 +0100
Message-Id: <20261129173000.1234-1-alice@example.org>
X-Mailer: git-send-email 2.39.2
In-Reply-To: <20261128120000.999-1-alice@example.org>
References: <20261128120000.999-1-alice@example.org>
MIME-Version: 1.0
Content-Transfer-Encoding: 8bit
"""

ROUNDCUBE = """MIME-Version: 1.0
Date: Sun, 29 Nov 2026 18:30:00 +0100
From: =?UTF-8?Q?J=C3=B6rg_Alice?= <alice+web@example.org>
To: undisclosed-recipients:;
Bcc: bob@example.net
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=
Message-ID: <f3e2d1c0b9a8@example.org>
X-Sender: alice@example.org
User-Agent: Roundcube Webmail/1.6.5
Content-Type: text/plain; charset=US-ASCII;
 format=flowed
Content-Transfer-Encoding: 7bit
"""

K9 = """From: grandma@family.example
Sender: alice@example.org
Reply-To: Family <family@family.example>
To: friends: bob@example.net, "Carol" <carol@example.com>;
Subject: photos
Date: Sun, 29 Nov 2026 18:30:00 +0100
Message-ID: <k9.1234@family.example>
"""

MISMATCH = """From: The Boss <boss@example.com>
To: bob@example.net
Subject: please pay this invoice
"""

SEVERAL_FROM = """From: alice@example.org, grandma@family.example
To: bob@example.net
Subject: from both of us
"""

OBSOLETE = """From : alice . smith @ example . org (Alice)
To: <@route.example:bob@example.net>, , carol
Reply-To: "bob@x" <bob@example.net>
Subject: obsolete forms
"""

RECEIPT = """From: alice@example.org
To: bob@example.net
Subject: Read: lunch?
Content-Type: multipart/report; report-type=disposition-notification;
\tboundary="b1"
"""

MINIMAL = """Subject: nothing else
"""

POLICY_SEEDS = {
    # control byte: bit0 add-sender, bit1 keep Bcc, bit2 hide IP,
    # bits 3-4 envelope sender, bit5 no TLS
    "thunderbird": (0x00, THUNDERBIRD),
    "outlook": (0x00, OUTLOOK),
    "apple": (0x20, APPLE),
    "mutt": (0x00, MUTT),
    "mutt_keep_bcc": (0x02, MUTT),
    "git": (0x04, GIT),
    "roundcube": (0x10, ROUNDCUBE),
    "k9_sender": (0x18, K9),
    "mismatch_reject": (0x00, MISMATCH),
    "mismatch_add_sender": (0x01, MISMATCH),
    "several_from": (0x00, SEVERAL_FROM),
    "obsolete": (0x01, OBSOLETE),
    "receipt_null_sender": (0x08, RECEIPT),
    "minimal": (0x00, MINIMAL),
    "empty": (0x00, ""),
}

# ------------------------------------------------------------------ #
# Address field bodies and paths (control byte 0: out buffer MAX_ADDR)

ADDR_SEEDS = {
    "name_addr": ' Alice Example <alice@example.org>',
    "list": ' "Bob" <bob@example.net>, carol@example.com (Carol), dave',
    "group": ' friends: bob@example.net, "Carol C." <carol@example.com>;',
    "empty_group": ' undisclosed-recipients:;',
    "folded": ' Bob <bob@example.net>,\r\n\tCarol <carol@example.com>',
    "quoted_local": ' "bob"@example.net, "bob smith"@example.net',
    "quoted_at": ' "a@b"',
    "literal": ' bob@[192.0.2.1], bob@[IPv6:2001:db8::1]',
    "route": ' <@a.example,@b.example:bob@example.net>',
    "obs_dots": ' John Q. Public <jqp@example.net>, a . b @ c . example',
    "bare": ' alice',
    "comments": ' (lead) alice(x)@(y)example.org (trail)',
    "utf8": ' J\u00f6rg <joerg@example.org>',
    "at_in_name": ' bob@example.net <bob@example.net>',
    "path": '<alice@example.org> SIZE=100',
    "path_null": '<>',
    "path_quoted": '<"a b\\"c"@example.org>',
    "path_route": '<@r.example:bob@example.net>',
}

# ------------------------------------------------------------------ #
# DATA streams: 4 control bytes + what follows "DATA" CR LF

DATA_SEEDS = {
    "thunderbird": (b"\x00\x00\x12\x34",
                    crlf(THUNDERBIRD + "\nHi Bob,\n\nlunch at noon?\n\n"
                         "-- \nAlice\n.\n")),
    "dot_stuffed": (b"\x00\x00\x43\x21",
                    crlf("Subject: dots\n\n..leading dot\n...two\n.\n")),
    "empty": (b"\x00\x00\x00\x01", b".\r\n"),
    "header_only": (b"\x00\x00\x00\x02", crlf("Subject: x\n.\n")),
    "pipelined": (b"\x00\x00\x00\x03",
                  crlf("Subject: a\n\nbody\n.\nMAIL FROM:<alice@example.org>\n")),
    "smuggle_lf": (b"\x00\x00\x00\x04",
                   b"Subject: a\r\n\r\nbody\n.\nMAIL FROM:<x@y>\r\n"
                   b"RCPT TO:<z@w>\r\nDATA\r\n\r\nevil\r\n.\r\n"),
    "smuggle_crlf_lf": (b"\x00\x00\x00\x05",
                        b"Subject: a\r\n\r\nbody\r\n.\nMAIL FROM:<x@y>\r\n.\r\n"),
    "smuggle_lf_crlf": (b"\x00\x00\x00\x06",
                        b"Subject: a\r\n\r\nbody\n.\r\nMAIL FROM:<x@y>\r\n.\r\n"),
    "smuggle_cr": (b"\x00\x00\x00\x07",
                   b"Subject: a\r\n\r\nbody\r.\r\nx\r\n.\r\n"),
    "bare_cr_header": (b"\x00\x00\x00\x08",
                       b"Subject: a\rb\r\n\r\nbody\r\n.\r\n"),
    "nul_header": (b"\x00\x00\x00\x09", b"Subject: a\0b\r\n\r\nbody\r\n.\r\n"),
    "long_line": (b"\x00\x00\x00\x0a",
                  b"Subject: long\r\n\r\n" + b"x" * 1000 + b"\r\n.\r\n"),
    "size_limit": (b"\x00\x02\x00\x0b",
                   crlf("Subject: small limit\n\n" + "0123456789" * 5 + "\n.\n")),
    "refusing_sinks": (b"\x06\x00\x00\x0c",
                       crlf(APPLE + "\nbody\n.\n")),
    "unfinished": (b"\x01\x00\x00\x0d", crlf("Subject: cut\n\npartial\n")),
    "big_body": (b"\x00\x00\x77\x0e",
                 crlf("Subject: big\n\n" + ("line of text " * 40 + "\n") * 30
                      + ".\n")),
}

# ------------------------------------------------------------------ #
# YAML configurations

CFG_MINIMAL = """hostname: mail.example.org
listen:
  - { address: "127.0.0.1:587", tls: starttls }
"""

CFG_FULL = """hostname: mail.example.org
domain: example.org
user: msa
spool: /var/spool/msa
log:
  level: debug
  target: stderr
listen:
  - { address: "0.0.0.0:587", tls: starttls }
  - { address: "[::]:587", tls: starttls }
  - { address: "0.0.0.0:465", tls: implicit }
tls:
  certificate: /etc/msa/fullchain.pem
  key: /etc/msa/privkey.pem
  min_version: "1.3"
auth:
  users: /etc/msa/passwd
  max_failures: 5
senders:
  alice: [ "alice@example.org", "alice+*@example.org", "@family.example" ]
  bob@example.net: [ "bob@example.net" ]
limits:
  message_size: 25M
  recipients: 100
  sessions: 50
  sessions_per_ip: 10
  messages_per_hour: 200
policy:
  from_mismatch: add-sender
  remove_bcc: false
  hide_client_ip: true
relay:
  mode: mx
  tls: required
  retry: { first: 5m, max: 1h, give_up: 5d }
  concurrency: 4
  mx_port: 25
dns:
  nameservers: [ "127.0.0.1:53", "[::1]:5353", "192.0.2.53" ]
"""

CFG_SMARTHOST = """hostname: router.home.arpa
relay:
  mode: smarthost
  smarthost:
    host: smtp.provider.example
    port: 465
    tls: implicit
    username: me@provider.example
    password_file: /etc/msa/smarthost.secret
  retry:
    first: 30s
    max: 2h
    give_up: 3d
"""

CFG_ERRORS = """hostname: -bad-.example
listen:
  - { address: "0.0.0.0:99999", tls: sometimes }
  - "not a map"
limits:
  message_size: 10X
  sessions: 5
  sessions_per_ip: 10
unknown_key: 1
relay:
  retry: { first: 2h, max: 1h }
"""

CFG_ANCHORS = """hostname: mail.example.org
senders:
  alice: &mine [ "alice@example.org", "@family.example" ]
  bob: *mine
relay: &r
  mode: mx
  smarthost: *r
---
extra: document
"""

CFG_BLOCK = """# comments only, then block style
hostname: 'mail.example.org'
domain: "example.org"
listen:
- address: 127.0.0.1:2525
  tls: starttls
- address: "[::1]:4650"
  tls: implicit
tls:
    certificate: "/etc/msa/fullchain.pem"
    key: /etc/msa/privkey.pem
    min_version: 1.2
limits: {message_size: 1G, recipients: 200, sessions: 65535,
         sessions_per_ip: 1}
"""

CONFIG_SEEDS = {
    "minimal": CFG_MINIMAL,
    "full": CFG_FULL,
    "smarthost": CFG_SMARTHOST,
    "errors": CFG_ERRORS,
    "anchors": CFG_ANCHORS,
    "block": CFG_BLOCK,
    "empty": "",
    "comment": "# nothing here\n---\n",
    # durations without an upper bound (known: FUZZ_STRICT finds these)
    "huge_give_up": "relay:\n  retry: { give_up: 9223372036854775807 }\n",
    "huge_max": "relay:\n  retry: { first: 5m, max: 106751991167300d }\n",
}

# ------------------------------------------------------------------ #
# Relay: server replies (mode 0), data (mode 1), job frames (mode 2)

REPLY_SEEDS = {
    "postfix_ehlo": "250-mx.example.net\n250-PIPELINING\n250-SIZE 10240000\n"
                    "250-VRFY\n250-ETRN\n250-STARTTLS\n250-ENHANCEDSTATUSCODES\n"
                    "250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING\n",
    "gmail_ehlo": "250-mx.google.com at your service, [192.0.2.7]\n"
                  "250-SIZE 157286400\n250-8BITMIME\n250-STARTTLS\n"
                  "250-ENHANCEDSTATUSCODES\n250-PIPELINING\n250-CHUNKING\n"
                  "250 SMTPUTF8\n",
    "smarthost_ehlo": "250-smtp.provider.example\n250-AUTH=PLAIN LOGIN\n"
                      "250-AUTH PLAIN LOGIN XOAUTH2\n250-SIZE\n250 HELP\n",
    "exim_ehlo": "250-mail.example.com Hello laptop [192.0.2.7]\n"
                 "250-SIZE 52428800\n250-LIMITS MAILMAX=1000 RCPTMAX=50000\n"
                 "250-8BITMIME\n250-PIPELINING\n250-PIPE_CONNECT\n"
                 "250-AUTH CRAM-MD5\n250-STARTTLS\n250 HELP\n",
    "greeting": "220 mx.example.net ESMTP Postfix (Debian/GNU)\n",
    "greeting_multi": "220-mx.example.net ESMTP\n220-no UCE\n220 ready\n",
    "rejected": "550 5.1.1 <bob@example.org>: Recipient address rejected: "
                "User unknown in virtual mailbox table\n",
    "gmail_reject": "550-5.7.26 Unauthenticated email from example.org is "
                    "not accepted\n550-5.7.26 due to domain's DMARC policy.\n"
                    "550 5.7.26 https://support.google.com/mail/answer/2451690\n",
    "tempfail": "451 4.3.0 Temporary lookup failure\n421 4.7.0 closing\n",
    "bare_code": "354\n250\n",
    "queued": "250 2.0.0 Ok: queued as 4Zx1yT2q3Jz9\n221 2.0.0 Bye\n",
    "auth": "334 VXNlcm5hbWU6\n334 UGFzc3dvcmQ6\n235 2.7.0 Authentication successful\n",
    "mixed_codes": "250-first\n251 second\n",
    "crlf": "250-a\r\n250 b\r\n",
}

RELAY_DATA_SEEDS = {
    "message": THUNDERBIRD + "\nHi,\n.\n..\n.x\nend\n",
    "dots_only": ".\n..\n...\n",
    "no_header": "\nbody only\n.",
    "no_newline": "Subject: x\n\nno final newline",
    "cr_mix": "Subject: x\r\n\r\nline\rwith CR\n.\r\n",
}


def relay_job(ident, sender, domain, rcpts, size=1532, body_8bit=0,
              nrcpt=None):
    n = len(rcpts) if nrcpt is None else nrcpt
    job = (ident.encode().ljust(17, b"\0") + sender.encode().ljust(256, b"\0")
           + domain.encode().ljust(256, b"\0"))
    job = job.ljust(536, b"\0") + struct.pack("=QII", size, body_8bit, n)
    assert len(job) == 552
    return job + b"".join(r.encode().ljust(256, b"\0") for r in rcpts)


JOB_SEEDS = {
    "job": relay_job("0123456789abcdef", "alice@example.org", "example.net",
                     ["bob@example.net", "carol@example.net"]),
    "job_null_sender": relay_job("fedcba9876543210", "", "example.org",
                                 ["alice@example.org"]),
    "job_bad_count": relay_job("0123456789abcdef", "a@b", "c", ["d@c"],
                               nrcpt=2),
    "job_bad_char": relay_job("0123456789abcdef", "a@b", "c", ["d>@c"]),
}

# ------------------------------------------------------------------ #
# DNS answers (2 control bytes: status, mode)

def dns_name(name, table=None, base=12):
    out = b""
    for label in [x for x in name.split(".") if x]:
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def dns_msg(qname, qtype, answers, rcode=0, ancount=None, extra=b""):
    q = dns_name(qname) + struct.pack(">HH", qtype, 1)
    body = b""
    for rtype, rdata, name in answers:
        owner = b"\xc0\x0c" if name is None else dns_name(name)
        body += owner + struct.pack(">HHIH", rtype, 1, 300, len(rdata)) + rdata
    n = len(answers) if ancount is None else ancount
    hdr = struct.pack(">HHHHHH", 0xbeef, 0x8180 | rcode, 1, n, 0, 0)
    return hdr + q + body + extra


def mx(pref, host, compress_to=None):
    if compress_to is not None:
        first = host.split(".")[0]
        return (15, struct.pack(">H", pref) + bytes([len(first)])
                + first.encode() + struct.pack(">H", 0xc000 | compress_to),
                None)
    return (15, struct.pack(">H", pref) + dns_name(host), None)


def a(addr):
    return (1, bytes(int(x) for x in addr.split(".")), None)


def aaaa(addr):
    import ipaddress
    return (28, ipaddress.IPv6Address(addr).packed, None)


DNS_SEEDS = {
    "mx_two": (b"\x00\x00", dns_msg("example.org", 15,
                                   [mx(10, "mx1.example.org"),
                                    mx(20, "mx2.example.org")])),
    "mx_compressed": (b"\x00\x00", dns_msg("example.org", 15,
                                          [mx(10, "mx.example.org", 12),
                                           mx(10, "mx2.example.org", 12),
                                           mx(5, "backup.example.net")])),
    "mx_null": (b"\x00\x00", dns_msg("example.org", 15,
                                    [(15, b"\x00\x00\x00", None)])),
    "mx_null_and_host": (b"\x00\x00", dns_msg("example.org", 15,
                                             [(15, b"\x00\x00\x00", None),
                                              mx(10, "mx.example.org")])),
    "mx_bad_host": (b"\x00\x00", dns_msg("example.org", 15,
                                        [mx(10, "bad host!.example.org")])),
    "mx_cname_only": (b"\x00\x00", dns_msg("example.org", 15,
                                          [(5, dns_name("alias.example.net"),
                                            None)])),
    "mx_nodata": (b"\x00\x00", dns_msg("example.org", 15, [])),
    "mx_nxdomain": (b"\xc4\x00", dns_msg("nx.example.org", 15, [], rcode=3)),
    "mx_servfail": (b"\xc3\x00", dns_msg("example.org", 15, [], rcode=2)),
    "mx_many": (b"\x00\x00", dns_msg("example.org", 15,
                                    [mx(i % 4 * 10, "mx%d.example.org" % i)
                                     for i in range(20)])),
    "mx_truncated": (b"\x00\x00", dns_msg("example.org", 15,
                                         [mx(10, "mx1.example.org")])[:-5]),
    "a_three": (b"\x00\x01", dns_msg("mx.example.org", 1,
                                    [a("192.0.2.1"), a("192.0.2.2"),
                                     a("198.51.100.7")])),
    "aaaa_two": (b"\x00\x01", dns_msg("mx.example.org", 28,
                                     [aaaa("2001:db8::1"),
                                      aaaa("2001:db8::25")])),
    "a_cname_chain": (b"\x00\x01", dns_msg("mx.example.org", 1,
                                          [(5, dns_name("real.example.org"),
                                            None),
                                           (1, bytes([192, 0, 2, 9]),
                                            "real.example.org")])),
    "literal_v4": (b"\x00\x02", b"[192.0.2.1]"),
    "literal_v6": (b"\x00\x02", b"[IPv6:2001:db8::1]"),
    "literal_bare_v6": (b"\x00\x02", b"2001:db8::1"),
    "literal_plain": (b"\x00\x02", b"192.0.2.1"),
}

# ------------------------------------------------------------------ #
# Queue envelopes

ENV_BASIC = """msa-envelope 1
id 0123456789abcdef
created 1732900000
sender alice@example.org
login alice
client 192.0.2.1
helo laptop.example.org
size 1532
body_8bit 0
rcpt pending 0 0 0 bob@example.net -
end
"""

ENV_MANY = """msa-envelope 1
id 00ff00ff00ff00ff
created 1732900000
sender -
login alice
client 2001:db8::7
helo %5B192.0.2.7%5D
size 99
body_8bit 1
rcpt pending 2 1732900600 1732900300 bob@example.net 451%204.3.0%20Temporary%20lookup%20failure
rcpt delivered 1 0 1732900100 carol@example.com 250%202.0.0%20Ok
rcpt failed 1 0 1732900100 dave@example.com 550%205.1.1%20%3Cdave@example.com%3E:%20no%20such%20user
rcpt expired 40 0 1733332000 eve@example.org 4.4.1%20connect%20failed
rcpt bounced 1 0 1732900100 %22a%20b%22@example.org %25%2D
end
"""

ENV_BAD = """msa-envelope 1
id 0123456789ABCDEF
created -1
sender a b
end
"""

QUEUE_SEEDS = {
    "basic": b"\x00" + ENV_BASIC.encode(),
    "many": b"\x00" + ENV_MANY.encode(),
    "bad": b"\x00" + ENV_BAD.encode(),
    "build": b"\x01alice@example.org\0alice\0192.0.2.1\0laptop\0"
             b"bob@example.net\0250 ok\0carol@example.com\0-",
    "build_odd": b"\x01-\0%\0 \0\x7f\xff\0a b@c\0\r\n\0\"q\"@x\0",
}


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for name, line in SMTP_LINES.items():
        write("smtp_cmd", name, b"\x80" + line.encode())
    write("smtp_cmd", "small_size", b"\x01MAIL FROM:<a@example.org> SIZE=2000")
    for name, (ctl, data) in DATA_SEEDS.items():
        write("smtp_data", name, ctl + data)
    for name, (ctl, hdr) in POLICY_SEEDS.items():
        write("policy", name, bytes([ctl]) + crlf(hdr))
    for name, text in ADDR_SEEDS.items():
        write("addr", name, b"\x00" + text.encode())
    write("addr", "small_out", b"\x05<alice@example.org>")
    for name, text in CONFIG_SEEDS.items():
        write("config", name + ".yaml", text.encode())
    with open(os.path.join(HERE, "..", "..", "msa.yaml.example"), "rb") as f:
        write("config", "example.yaml", f.read())
    for name, text in REPLY_SEEDS.items():
        write("relay_reply", "reply_" + name, b"\x00" + text.encode())
    for name, text in RELAY_DATA_SEEDS.items():
        write("relay_reply", "data_" + name, b"\x01" + text.encode())
    for name, frame in JOB_SEEDS.items():
        write("relay_reply", name, b"\x02" + frame)
    for name, (ctl, data) in DNS_SEEDS.items():
        write("dns", name, ctl + data)
    for name, data in QUEUE_SEEDS.items():
        write("queue_env", name, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
