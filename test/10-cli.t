#!/usr/bin/python3
"""Command line: msa -V, msa -n (configuration check with FILE:LINE:COL
messages), msa passwd, usage errors, exit status 2 when a listen address is
in use."""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msatest as t  # noqa: E402

t.set_timeout(120)

m = t.Msa(users={"alice": "alice-pw"}, start=False)
d = m.dir

# -- msa -V -----------------------------------------------------------------
p = t.run_msa("-V")
t.is_(p.returncode, 0, "msa -V exits 0")
t.like(p.stdout + p.stderr, r"\b0\.1\.0\b", "msa -V prints the version 0.1.0")

# -- msa -n on a good configuration ------------------------------------------
p = t.run_msa("-n", "-c", m.cfgpath)
if not t.is_(p.returncode, 0, "msa -n -c FILE: a valid configuration exits 0"):
    t.diag("config:\n" + open(m.cfgpath).read(), "output: " + p.stdout +
           p.stderr)
p = t.run_msa("-c", m.cfgpath, "-n")
t.is_(p.returncode, 0, "msa -c FILE -n: -c may stand before -n")
t.unlike(p.stdout + p.stderr, r":\d+:\d+: ",
         "a valid configuration prints no FILE:LINE:COL problem")

# A minimal valid file, written by hand so line numbers are known.
BASE = [
    'hostname: msa.test',                                   # 1
    'domain: example.org',                                  # 2
    'user: msa',                                            # 3
    'spool: "%s"' % m.spool,                                # 4
    'listen:',                                              # 5
    '  - { address: "127.0.0.1:%d", tls: starttls }' % m.port["starttls"],
    'tls:',                                                 # 7
    '  certificate: "%s"' % m.cert,                         # 8
    '  key: "%s"' % m.key,                                  # 9
    'auth:',                                                # 10
    '  users: "%s"' % m.passwd,                             # 11
]
N = len(BASE)


def config_lines(replace=None, append=()):
    lines = list(BASE)
    for lineno, text in (replace or {}).items():
        lines[lineno - 1] = text
    return "\n".join(lines + list(append)).split("\n")


def config_file(name, replace=None, append=()):
    path = os.path.join(d, name + ".yaml")
    with open(path, "w") as f:
        f.write("\n".join(config_lines(replace, append)) + "\n")
    return path


path = config_file("base")
p = t.run_msa("-n", "-c", path)
t.is_(p.returncode, 0, "the minimal hand-written configuration is valid")
if p.returncode != 0:
    t.diag(p.stdout + p.stderr)


def problems(output, path):
    """[(line, col, message)] of FILE:LINE:COL: lines naming path."""
    out = []
    for ln in output.splitlines():
        mm = re.search(re.escape(path) + r":(\d+):(\d+): ?(.*)", ln)
        if mm:
            out.append((int(mm.group(1)), int(mm.group(2)), mm.group(3)))
    return out


def bad_config(what, name, key, value, pattern, replace=None, append=()):
    """msa -n must exit 1 and print FILE:LINE:COL: message for the line
    holding key (and value): the column (1-based) may point at the key or
    at the value (or its opening quote); the message must match pattern."""
    lines = config_lines(replace, append)
    line = [i for i, x in enumerate(lines, 1)
            if key in x and (value is None or value in x)][-1]
    text = lines[line - 1]
    cols = [text.index(key) + 1]
    if value is not None:
        v = text.index(value, text.index(key))
        cols.append(v + 1)
        if v > 0 and text[v - 1] in "\"'":
            cols.append(v)  # a quoted scalar starts at its quote
    path = config_file(name, replace, append)
    p = t.run_msa("-n", "-c", path)
    out = p.stdout + p.stderr
    t.is_(p.returncode, 1, "%s: msa -n exits 1" % what)
    found = problems(out, path)
    hit = [f for f in found if f[0] == line and f[1] in cols]
    if not t.ok(hit, "%s: reported as %s:%d:%s" % (
            what, os.path.basename(path), line, "|".join(map(str, cols)))):
        t.diag("output was: %r" % out)
    msg = " ".join(f[2] for f in (hit or found))
    t.like(msg, pattern, "%s: the message names the problem" % what)
    return out


bad_config("an unknown top-level key", "unknown", "bogus", None,
           r"(?i)bogus", append=["bogus: 1"])
bad_config("an unknown key inside limits", "unknown-nested", "frobs", None,
           r"(?i)frobs", append=["limits:", "  frobs: 3"])
bad_config("a word where a number belongs", "wrong-type", "recipients",
           "many", r"(?i)recipients|number|integer",
           append=["limits:", "  recipients: many"])
bad_config("a map where a number belongs", "wrong-type-map", "recipients",
           "{", r"(?i)recipients|number|integer|scalar|map",
           append=["limits:", "  recipients: { a: 1 }"])
bad_config("a bad size (25Q)", "bad-size", "message_size", "25Q",
           r"(?i)size|25Q", append=["limits:", "  message_size: 25Q"])
bad_config("a bad duration (5x)", "bad-duration", "first", "5x",
           r"(?i)duration|5x|first",
           append=["relay:", "  retry: { first: 5x }"])
bad_config("an unknown log level", "bad-level", "level", "loud",
           r"(?i)level|loud", append=["log:", "  level: loud"])
bad_config("a listen port out of range", "bad-port", "address",
           "127.0.0.1:99999", r"(?i)address|port|99999",
           replace={6: '  - { address: "127.0.0.1:99999", tls: starttls }'})
bad_config("an unknown listen tls mode", "bad-tls-mode", "tls", "sometimes",
           r"(?i)tls|sometimes",
           replace={6: '  - { address: "127.0.0.1:%d", tls: sometimes }' %
                    m.port["starttls"]})
bad_config('tls min_version "1.1"', "bad-min-version", "min_version",
           '"1.1"', r"(?i)min_version|1\.1|version",
           replace={9: '  key: "%s"\n  min_version: "1.1"' % m.key})
bad_config("a user account that does not exist", "bad-user", "user:",
           "nosuchuser-msa", r"(?i)user|nosuchuser-msa",
           replace={3: "user: nosuchuser-msa"})
bad_config("from_mismatch with an unknown value", "bad-enum",
           "from_mismatch", "maybe", r"(?i)from_mismatch|maybe",
           append=["policy:", "  from_mismatch: maybe"])

# A YAML syntax error: FILE:LINE:COL somewhere at or after the bad line.
path = config_file("syntax", append=["limits: [unclosed", "relay: {"])
p = t.run_msa("-n", "-c", path)
t.is_(p.returncode, 1, "a YAML syntax error: msa -n exits 1")
found = problems(p.stdout + p.stderr, path)
if not t.ok(found and all(f[0] >= N + 1 for f in found),
            "a YAML syntax error: reported as FILE:LINE:COL at the error"):
    t.diag("output: %r" % (p.stdout + p.stderr))

# Every problem is reported, not only the first.
path = config_file("two-problems", append=["bogus1: 1", "bogus2: 2"])
p = t.run_msa("-n", "-c", path)
lines = sorted(f[0] for f in problems(p.stdout + p.stderr, path))
t.is_(p.returncode, 1, "two unknown keys: msa -n exits 1")
t.ok(N + 1 in lines and N + 2 in lines,
     "two unknown keys: both are reported with their lines")

# A missing configuration file.
p = t.run_msa("-n", "-c", os.path.join(d, "nonexistent.yaml"))
t.is_(p.returncode, 1, "a missing configuration file: exit 1")
t.like(p.stdout + p.stderr, r"nonexistent\.yaml",
       "a missing configuration file: the message names it")

# -- files the configuration names ------------------------------------------
missing = os.path.join(d, "missing-cert.pem")
path = config_file("missing-cert", replace={8: '  certificate: "%s"' % missing})
p = t.run_msa("-n", "-c", path)
t.is_(p.returncode, 1, "a missing certificate file: msa -n exits 1")
t.like(p.stdout + p.stderr, re.escape(missing),
       "a missing certificate file: the message names it")

other_cert, other_key = t.make_cert(d, "other")
path = config_file("mismatch", replace={9: '  key: "%s"' % other_key})
p = t.run_msa("-n", "-c", path)
t.is_(p.returncode, 1, "certificate and key that do not match: exit 1")
t.like(p.stdout + p.stderr, r"(?i)match|key",
       "certificate and key that do not match: the message says so")

garbage = os.path.join(d, "garbage.pem")
with open(garbage, "w") as f:
    f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
            "-----END CERTIFICATE-----\n")
path = config_file("garbage-cert", replace={8: '  certificate: "%s"' % garbage})
p = t.run_msa("-n", "-c", path)
t.is_(p.returncode, 1, "a certificate file that is not PEM: exit 1")


def bad_users(what, content, line):
    users = os.path.join(d, "users-%d" % line)
    with open(users, "w") as f:
        f.write(content)
    os.chmod(users, 0o600)
    path = config_file("users-%d" % line, replace={11: '  users: "%s"' % users})
    p = t.run_msa("-n", "-c", path)
    out = p.stdout + p.stderr
    t.is_(p.returncode, 1, "%s: msa -n exits 1" % what)
    if not t.like(out, re.escape(users) + r":%d:" % line,
                  "%s: reported as PASSWORDFILE:%d:..." % (what, line)):
        t.diag("output: %r" % out)


good = t.htpasswd_line("alice", "pw")
bad_users("a password file line without a colon",
          "# users\n%s\nthis line has no colon\n" % good, 3)
bad_users("a password file entry that is not a bcrypt hash",
          "%s\nbob:plaintext-password\n" % good, 2)
bad_users("a password file entry with an empty name",
          "%s\n\n:%s\n" % (good, good.split(":", 1)[1]), 3)
path = config_file("missing-users",
                   replace={11: '  users: "%s/no-such-passwd"' % d})
p = t.run_msa("-n", "-c", path)
t.is_(p.returncode, 1, "a missing password file: exit 1")
t.like(p.stdout + p.stderr, r"no-such-passwd",
       "a missing password file: the message names it")

# -- msa passwd --------------------------------------------------------------
p = t.run_msa("passwd", "alice", input="s3cret pass\n")
t.is_(p.returncode, 0, "msa passwd alice (password on stdin) exits 0")
line = p.stdout.strip()
t.like(line, r"\Aalice:\$2b\$12\$[./A-Za-z0-9]{53}\Z",
       "msa passwd prints NAME:$2b$12$... (one line, 60-character hash)")
hashed = line.split(":", 1)[1] if ":" in line else ""
t.ok(hashed and t.crypt_check("s3cret pass", hashed),
     "the printed hash verifies the password (libxcrypt)")
t.ok(hashed and not t.crypt_check("s3cret pasS", hashed),
     "the printed hash rejects another password")

p2 = t.run_msa("passwd", "alice", input="s3cret pass\n")
t.isnt(p2.stdout.strip(), line, "two runs use different salts")

p = t.run_msa("passwd", "bob", input="same\nsame\n")
t.is_(p.returncode, 0, "msa passwd: a matching second line is accepted")
t.like(p.stdout, r"^bob:\$2b\$12\$", "msa passwd: ... and prints the hash")

p = t.run_msa("passwd", "bob", input="one\ntwo\n")
t.is_(p.returncode, 1, "msa passwd: a second line that differs: exit 1")
t.unlike(p.stdout, r"\$2b\$", "msa passwd: ... and no hash is printed")

p = t.run_msa("passwd", "bob", input="")
t.is_(p.returncode, 1, "msa passwd: no password on stdin: exit 1")
t.unlike(p.stdout, r"\$2b\$", "msa passwd: ... and no hash is printed")

p = t.run_msa("passwd", input="nameless\n")
t.is_(p.returncode, 0, "msa passwd without NAME exits 0")
mm = re.search(r"(\$2b\$12\$[./A-Za-z0-9]{53})", p.stdout)
t.ok(mm and t.crypt_check("nameless", mm.group(1)),
     "msa passwd without NAME prints a hash that verifies")

p = t.run_msa("passwd", "a:b", input="pw\n")
t.is_(p.returncode, 1, "msa passwd 'a:b': a name with a colon is refused")

# -- usage -------------------------------------------------------------------
for args, what in ((["-x"], "an unknown option"),
                   (["frobnicate"], "an unknown command"),
                   (["-c"], "-c without a file"),
                   (["passwd", "a", "b"], "passwd with two names")):
    p = t.run_msa(*args, input="")
    t.is_(p.returncode, 1, "msa %s (%s): exit 1" % (" ".join(args), what))
    t.ok(p.stderr.strip() != "", "msa %s: says what is wrong on stderr" %
         " ".join(args))

# -- a listen address already in use: exit 2 ----------------------------------
busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
busy.bind((t.HOST, 0))
busy.listen(1)
busy_port = busy.getsockname()[1]
path = config_file("busy", replace={
    6: '  - { address: "127.0.0.1:%d", tls: starttls }' % busy_port})
start = time.monotonic()
proc = subprocess.Popen([t.MSA, "-c", path], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
t._helper_pids.add(proc.pid)
try:
    out, _ = proc.communicate(timeout=10)
    status = proc.returncode
except subprocess.TimeoutExpired:
    for c in t.descendants_of(proc.pid):
        t.kill_quietly(c)
    proc.kill()
    out, _ = proc.communicate()
    status = None
busy.close()
t.is_(status, 2, "a listen address already in use: msa exits 2")
t.like(out.decode("utf-8", "replace"),
       r"127\.0\.0\.1:%d|(?i:in use)" % busy_port,
       "a listen address already in use: the message names it")

t.done_testing()
