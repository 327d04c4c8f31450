"""msatest - a small TAP producer and a harness that runs the real ./msa.

Integration tests (test/NN-name.t, `#!/usr/bin/python3`) import this module:

    import msatest as t
    m = t.Msa(users={"alice": "secret"}, limits={"recipients": 3})
    s = m.smtp(login=("alice", "secret"))
    ...
    t.done_testing()

TAP: plan, ok, is_, isnt, like, unlike, cmp_ok, diag, note, skip,
skip_all, bail_out, done_testing.  The exit status is non-zero when a test
failed; an uncaught exception is reported as a failed test, and every test
file is bounded in time (set_timeout, default MSATEST_TIMEOUT or 90 s).

Msa(**config): a temporary directory (0755, so the msa user can traverse
it) holding a certificate, a password file, msa.yaml (config overrides are
deep-merged into the defaults; a value of None removes a key), the spool
and msa.log (the daemon's stderr).  It starts `./msa -c msa.yaml` as root
and waits until every listen port serves a banner.  Everything is cleaned up
at exit, also when a test dies; on failure the tail of each daemon log is
printed as diagnostics.  MSATEST_KEEP=1 keeps the directories.
Environment: MSA (the binary, default ../msa next to this directory).
"""

import base64
import ctypes
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

TESTDIR = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(TESTDIR)
MSA = os.environ.get("MSA", os.path.join(TOP, "msa"))
PYTHON = "/usr/bin/python3"
HOST = "127.0.0.1"
KEEP = os.environ.get("MSATEST_KEEP", "") not in ("", "0")

# ---------------------------------------------------------------------------
# TAP


class _Tap:
    count = 0
    failed = 0
    planned = None
    done = False


_tap = _Tap()


def _out(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _caller():
    """file:line of the first frame outside this module."""
    for frame in traceback.extract_stack()[::-1]:
        if os.path.abspath(frame.filename) != os.path.abspath(__file__):
            return "%s line %d" % (os.path.basename(frame.filename),
                                   frame.lineno)
    return "?"


def _one_line(name):
    return str(name).replace("\n", " ").replace("#", "\\#")


def plan(n):
    _tap.planned = n
    _out("1..%d" % n)


def skip_all(reason):
    _out("1..0 # SKIP %s" % _one_line(reason))
    _tap.done = True
    _cleanup()
    os._exit(0)


def bail_out(reason):
    _out("Bail out!  %s" % _one_line(reason))
    _tap.done = True
    _cleanup()
    os._exit(255)


def ok(cond, name=""):
    _tap.count += 1
    _out("%sok %d - %s" % ("" if cond else "not ", _tap.count,
                           _one_line(name)))
    if not cond:
        _tap.failed += 1
        diag("  Failed test '%s'" % name, "  at %s." % _caller())
    return bool(cond)


def pass_(name=""):
    return ok(True, name)


def fail(name="", *why):
    r = ok(False, name)
    if why:
        diag(*why)
    return r


def _show(v):
    if isinstance(v, (bytes, bytearray)) and len(v) > 600:
        return repr(bytes(v[:300])) + " ... " + repr(bytes(v[-300:])) + \
            " (%d bytes)" % len(v)
    if isinstance(v, str) and len(v) > 1200:
        return repr(v[:600]) + " ... " + repr(v[-600:]) + \
            " (%d chars)" % len(v)
    return repr(v)


def is_(got, want, name=""):
    r = ok(got == want, name)
    if not r:
        diag("         got: %s" % _show(got), "    expected: %s" % _show(want))
    return r


def isnt(got, notwant, name=""):
    r = ok(got != notwant, name)
    if not r:
        diag("         got: %s" % _show(got),
             "    expected: anything else")
    return r


def _text(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", "replace")
    return "" if v is None else str(v)


def like(got, pattern, name=""):
    r = ok(re.search(pattern, _text(got), re.M) is not None, name)
    if not r:
        diag("                  %s" % _show(got),
             "    doesn't match '%s'" % pattern)
    return r


def unlike(got, pattern, name=""):
    r = ok(re.search(pattern, _text(got), re.M) is None, name)
    if not r:
        diag("                  %s" % _show(got),
             "          matches '%s'" % pattern)
    return r


def cmp_ok(got, op, want, name=""):
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
           "==": lambda a, b: a == b, "!=": lambda a, b: a != b}
    try:
        r = ok(ops[op](got, want), name)
    except TypeError:
        r = ok(False, name)
    if not r:
        diag("    %s" % _show(got), "        %s" % op, "    %s" % _show(want))
    return r


def skip(reason, count=1):
    for _ in range(count):
        _tap.count += 1
        _out("ok %d # SKIP %s" % (_tap.count, _one_line(reason)))


def diag(*lines):
    sys.stdout.flush()
    for text in lines:
        for line in str(text).split("\n"):
            sys.stderr.write("# %s\n" % line)
    sys.stderr.flush()


def note(*lines):
    for text in lines:
        for line in str(text).split("\n"):
            _out("# %s" % line)


def failed():
    return _tap.failed


def done_testing():
    if _tap.planned is None:
        _out("1..%d" % _tap.count)
    _tap.done = True
    status = min(_tap.failed, 254)
    if _tap.planned is not None and _tap.planned != _tap.count:
        diag("planned %d tests but ran %d" % (_tap.planned, _tap.count))
        status = 255
    if _tap.failed:
        diag("failed %d of %d tests" % (_tap.failed, _tap.count))
    _cleanup()
    sys.stdout.flush()
    sys.exit(status)


class TestTimeout(BaseException):
    """Raised by SIGALRM when a test file runs over its time budget."""


def _on_alarm(signum, frame):
    raise TestTimeout("test file ran out of time (set_timeout)")


def set_timeout(seconds):
    """Bound the whole test file: past this, it fails and cleans up."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(int(seconds))


def _excepthook(etype, value, tb):
    if etype is KeyboardInterrupt:
        _cleanup()
        os._exit(130)
    _tap.count += 1
    _tap.failed += 1
    _out("not ok %d - test script died: %s: %s" % (
        _tap.count, etype.__name__, _one_line(value)))
    diag("".join(traceback.format_exception(etype, value, tb)))
    if not _tap.done:
        _out("1..%d" % _tap.count)
    _tap.done = True
    _cleanup()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(255)


sys.excepthook = _excepthook
set_timeout(int(os.environ.get("MSATEST_TIMEOUT", "90")))

# ---------------------------------------------------------------------------
# Small utilities


def wait_for(fn, timeout=5.0, interval=0.05):
    """Call fn until it returns something true or timeout passes."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= end:
            return v
        time.sleep(interval)


def free_port(host=HOST):
    """A loopback TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def dot_stuff(data):
    """Dot-stuff a message (CRLF lines) for DATA, without the final dot."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def crlf(text):
    """A str/bytes message with \\n line ends -> bytes with CRLF."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def make_message(frm="alice@example.org", to="bob@example.net",
                 subject="test", body="Hello.\n", extra=""):
    """A simple RFC 5322 message as CRLF bytes.  A str body gets CRLF line
    ends; a bytes body is used exactly as given."""
    head = "From: %s\nTo: %s\nSubject: %s\n%s" % (frm, to, subject, extra)
    if isinstance(body, bytes):
        return crlf(head + "\n") + body
    return crlf(head + "\n" + body)


def split_message(data):
    """(header section, body) of message bytes, split at the first empty
    line (CRLF CRLF; LF LF tolerated so a test can say what it found)."""
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n")
    if i >= 0 and (j < 0 or i <= j):
        return data[:i + 2], data[i + 4:]
    if j >= 0:
        return data[:j + 1], data[j + 2:]
    return data, b""


def body_of(data):
    return split_message(data)[1]


def header_values(data, name):
    """Unfolded values of every header field called name."""
    head = split_message(data)[0].decode("utf-8", "replace")
    head = re.sub(r"\r?\n[ \t]", " ", head)
    out = []
    for line in re.split(r"\r?\n", head):
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            out.append(v.strip())
    return out


def b64(s):
    if isinstance(s, str):
        s = s.encode("utf-8")
    return base64.b64encode(s).decode("ascii")


def plain_response(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


def run(args, input=None, timeout=30, env=None):
    """Run a command; CompletedProcess with text stdout/stderr."""
    if isinstance(input, str):
        input = input.encode("utf-8")
    p = subprocess.run(args, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env,
                       stdin=None if input is not None else subprocess.DEVNULL)
    p.stdout = p.stdout.decode("utf-8", "replace")
    p.stderr = p.stderr.decode("utf-8", "replace")
    return p


def run_msa(*args, input=None, timeout=30):
    return run([MSA] + list(args), input=input, timeout=timeout)


def msa_built():
    return os.access(MSA, os.X_OK)


# ---------------------------------------------------------------------------
# Certificates and passwords


def make_cert(directory, name="server", cn="localhost"):
    """A fresh self-signed P-256 certificate + key; (cert, key) paths."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    p = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-days", "3650", "-nodes",
             "-subj", "/CN=%s" % cn, "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", key, "-out", cert])
    if p.returncode != 0:
        raise RuntimeError("openssl req failed: %s" % p.stderr)
    os.chmod(key, 0o600)
    return cert, key


def smarthost_pki(tag, name):
    """A scratch directory (removed at exit, readable by the msa user) with
    a CA and a certificate for name signed by it.  The CA becomes
    SSL_CERT_FILE, the bundle the daemon's relay opens before its sandbox
    (TRAPS.md).  Returns (directory, ca, (cert, key))."""
    work = tempfile.mkdtemp(prefix="msatest-%s-" % tag)
    os.chmod(work, 0o755)
    _tmpdirs.append(work)
    ca = make_ca(work, "ca", "msatest %s CA" % tag)
    cert = make_signed_cert(work, ca, "good", dns=(name,), ips=())
    os.environ["SSL_CERT_FILE"] = ca[0]
    return work, ca, cert


_cert_cache = {}


def shared_cert():
    """One certificate per test run (per test file process)."""
    if "pair" not in _cert_cache:
        d = tempfile.mkdtemp(prefix="msatest-cert-")
        _tmpdirs.append(d)
        _cert_cache["pair"] = make_cert(d)
    return _cert_cache["pair"]


def cert_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def htpasswd_line(user, password, cost=4):
    """name:$2y$ line made by Apache's htpasswd (fast cost by default)."""
    p = run(["htpasswd", "-nbB", "-C", str(cost), user, password])
    if p.returncode != 0:
        raise RuntimeError("htpasswd failed: %s" % p.stderr)
    return p.stdout.strip().splitlines()[0]


def msa_passwd_line(user, password):
    """name:$2b$12$ line made by `msa passwd NAME` (password on stdin)."""
    p = run_msa("passwd", user, input=password + "\n")
    line = p.stdout.strip()
    if p.returncode != 0 or not line.startswith(user + ":$2"):
        raise RuntimeError("msa passwd failed (status %d): %r %r" % (
            p.returncode, p.stdout, p.stderr))
    return line


def crypt_check(password, hashed):
    """Verify a bcrypt hash with libxcrypt (Python's crypt module)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import crypt
    return crypt.crypt(password, hashed) == hashed


# ---------------------------------------------------------------------------
# YAML (a small emitter: block maps and lists, quoted where needed)

_PLAIN = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./@+*-]*\Z")
_NUMBERISH = re.compile(r"[-+]?(\d[\d_]*)?(\.\d*)?([eE][-+]?\d+)?\Z")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and not _NUMBERISH.match(s) and \
            s.lower() not in _RESERVED:
        return s
    return json.dumps(s)


def to_yaml(obj, indent=0):
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if v is None:
                continue
            if isinstance(v, dict):
                out.append("%s%s:%s" % (pad, k, "" if v else " {}"))
                if v:
                    out.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                out.append("%s%s:%s" % (pad, k, "" if v else " []"))
                if v:
                    out.append(to_yaml(v, indent + 2))
            else:
                out.append("%s%s: %s" % (pad, k, yaml_scalar(v)))
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, dict):
                sub = to_yaml(v, indent + 2).split("\n")
                sub[0] = pad + "- " + sub[0][indent + 2:]
                out.append("\n".join(sub))
            elif isinstance(v, list):
                out.append("%s- [%s]" % (pad, ", ".join(
                    yaml_scalar(x) for x in v)))
            else:
                out.append("%s- %s" % (pad, yaml_scalar(v)))
    return "\n".join(x for x in out if x != "")


def deep_merge(base, over):
    """Merge over into base (dicts recursively; None deletes a key)."""
    for k, v in over.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


# ---------------------------------------------------------------------------
# Processes (/proc)

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
# Orphaned msa children (after SIGKILL of the parent) become ours, so they
# can be found, killed and reaped; /proc's PID 1 may not reap them.
_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
_helper_pids = set()  # Popen children we wait for ourselves
PR_SET_PDEATHSIG = 1


def _die_with_us():
    """In a daemon we start: SIGTERM when the test process dies, so no msa
    outlives a test that was killed (SIGKILL skips our cleanup)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def proc_stat(pid):
    """(comm, state, ppid) of pid or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    lp, rp = s.find("("), s.rfind(")")
    rest = s[rp + 2:].split()
    return s[lp + 1:rp], rest[0], int(rest[1])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[1] not in ("Z", "X")


def all_procs():
    """{pid: ppid} of every live process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[1] not in ("Z", "X"):
                out[int(name)] = st[2]
    return out


def children_of(pid, procs=None):
    procs = all_procs() if procs is None else procs
    return sorted(p for p, pp in procs.items() if pp == pid)


def descendants_of(pid, procs=None):
    procs = all_procs() if procs is None else procs
    out, todo = [], [pid]
    while todo:
        for c in children_of(todo.pop(), procs):
            out.append(c)
            todo.append(c)
    return out


def proc_status(pid):
    """/proc/PID/status as a dict of strings ({} if gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        pass
    return out


def proc_root(pid):
    try:
        return os.readlink("/proc/%d/root" % pid)
    except OSError as e:
        return "<%s>" % e.strerror


def proc_comm(pid):
    st = proc_stat(pid)
    return st[0] if st else None


def proc_socket_inodes(pid):
    out = set()
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for fd in names:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", link)
        if m:
            out.add(int(m.group(1)))
    return out


def listen_inodes(port):
    """Inodes of TCP sockets listening on port (IPv4 and IPv6)."""
    out = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and \
                    int(fields[1].rsplit(":", 1)[1], 16) == port:
                out.add(int(fields[9]))
    return out


def reap_orphans():
    """Reap zombies that were re-parented to us (subreaper)."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        st = proc_stat(pid)
        if st and st[2] == me and st[1] == "Z" and pid not in _helper_pids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------
# SMTP clients


def client_context(min_version=None, max_version=None):
    """A TLS client context that does not verify (self-signed server)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


class Reply:
    """One (possibly multi-line) SMTP reply.  code is None at EOF."""

    def __init__(self, code, lines, raw):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "
        self.raw = raw
        m = re.match(r"(\d\.\d{1,3}\.\d{1,3})(\s|$)", lines[0]) \
            if lines else None
        self.enh = m.group(1) if m else None

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def cls(self):
        """The reply class (2, 3, 4, 5) or None at EOF."""
        return self.code // 100 if self.code and self.code > 0 else None

    def __str__(self):
        if self.code is None:
            return "<EOF>" + (" after %r" % self.raw if self.raw else "")
        return self.raw.decode("utf-8", "replace").rstrip("\r\n") \
            .replace("\r\n", " | ")

    __repr__ = __str__


class Raw:
    """A raw SMTP client socket: exact bytes out, replies parsed in."""

    def __init__(self, port, host=HOST, tls=False, timeout=10, source=None,
                 context=None, session=None):
        self.timeout = timeout
        self.buf = b""
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.tls = False
        if tls:
            self._wrap(context, session)

    def _wrap(self, context=None, session=None):
        ctx = context or client_context()
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost",
                                    session=session)
        self.tls = True

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            chunk = b""
        except ssl.SSLError as e:
            if "EOF" in str(e) or "SHUTDOWN" in str(e).upper():
                chunk = b""
            else:
                raise
        finally:
            if self.sock.fileno() >= 0:
                self.sock.settimeout(self.timeout)
        return chunk

    def line(self, timeout=None):
        """One line with its end, or b'' at EOF (partial data: returned)."""
        while b"\n" not in self.buf:
            chunk = self._fill(timeout)
            if not chunk:
                out, self.buf = self.buf, b""
                return out
            self.buf += chunk
        i = self.buf.index(b"\n") + 1
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def reply(self, timeout=None):
        raw, lines, code = b"", [], None
        while True:
            ln = self.line(timeout)
            if not ln.endswith(b"\n"):
                return Reply(None, lines, raw + ln)
            raw += ln
            text = ln.decode("utf-8", "replace").rstrip("\r\n")
            m = re.match(r"(\d{3})([ -]?)(.*)\Z", text)
            if not m:
                return Reply(-1, [text], raw)  # not SMTP at all
            code = int(m.group(1))
            lines.append(m.group(3))
            if m.group(2) != "-":
                return Reply(code, lines, raw)

    def cmd(self, line, timeout=None):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def pending(self, wait=0.5):
        """Bytes the server sends within wait seconds (b'' if none)."""
        out, self.buf = self.buf, b""
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                chunk = self._fill(left)
            except (socket.timeout, TimeoutError):
                return out
            if not chunk:
                return out
            out += chunk

    def at_eof(self, wait=3):
        """True if the server closes the connection within wait seconds
        (without sending anything more)."""
        if self.buf:
            return False
        try:
            chunk = self._fill(wait)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        if chunk:
            self.buf += chunk
            return False
        return True

    def starttls(self, context=None, session=None):
        """Handshake after a 220 to STARTTLS.  Bytes the server sent in
        clear after its 220 are kept in self.cleartext_extra."""
        self.cleartext_extra, self.buf = self.buf, b""
        self._wrap(context, session)

    def ehlo(self, name="client.test"):
        return self.cmd("EHLO " + name)

    def auth_plain(self, user, password):
        return self.cmd("AUTH PLAIN " + plain_response(user, password))

    def mail_transaction(self, sender, rcpts, data, stuff=True):
        """MAIL, RCPT..., DATA, message, '.'; returns every reply (the
        final one last).  Stops at the first unexpected reply."""
        replies = [self.cmd("MAIL FROM:<%s>" % sender)]
        if replies[-1].code != 250:
            return replies
        for r in rcpts:
            replies.append(self.cmd("RCPT TO:<%s>" % r))
        if not any(r.code == 250 for r in replies[1:]):
            return replies
        replies.append(self.cmd("DATA"))
        if replies[-1].code != 354:
            return replies
        payload = dot_stuff(data) if stuff else data
        if not payload.endswith(b"\r\n"):
            payload += b"\r\n"
        self.send(payload + b".\r\n")
        replies.append(self.reply())
        return replies

    @property
    def session(self):
        return self.sock.session if self.tls else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def queue_id(reply):
    """The id out of '250 2.0.0 Ok: queued as ID' (str, Reply or bytes)."""
    m = re.search(r"queued as <?([A-Za-z0-9]+)>?", _text(
        reply.raw if isinstance(reply, Reply) else reply))
    return m.group(1) if m else None


# ---------------------------------------------------------------------------
# The daemon


_instances = []
_tmpdirs = []


class MsaError(Exception):
    pass


class Message:
    def __init__(self, qid, data, env):
        self.id = qid
        self.data = data
        self.env = env

    @property
    def body(self):
        return body_of(self.data)

    @property
    def head(self):
        return split_message(self.data)[0]

    def header(self, name):
        return header_values(self.data, name)


class Msa:
    """One msa daemon in its own temporary directory.

    Keyword arguments that are not harness options are configuration
    overrides, deep-merged into the defaults (see config()).
    users: {name: password} written with htpasswd -B -C 4 ($2y$);
    slow_users: {name: password} written with `msa passwd` ($2b$12$).
    """

    def __init__(self, users=None, slow_users=None, start=True,
                 cert=None, wait=True, **overrides):
        if not msa_built():
            bail_out("%s is not built (make msa)" % MSA)
        self.dir = tempfile.mkdtemp(prefix="msatest-")
        os.chmod(self.dir, 0o755)
        _tmpdirs.append(self.dir)
        _instances.append(self)
        self.spool = os.path.join(self.dir, "spool")
        self.cfgpath = os.path.join(self.dir, "msa.yaml")
        self.logpath = os.path.join(self.dir, "msa.log")
        self.passwd = os.path.join(self.dir, "passwd")
        self.proc = None
        self.logf = None
        self.port = {"starttls": free_port(), "implicit": free_port()}
        self.dead_port = free_port()  # nothing listens: DNS and MX there
        self.cert, self.key = cert or shared_cert()
        self.user_lines = []
        for name, pw in (users or {}).items():
            self.user_lines.append(htpasswd_line(name, pw))
        for name, pw in (slow_users or {}).items():
            self.user_lines.append(msa_passwd_line(name, pw))
        self.write_users()
        self.overrides = overrides
        self.write_config()
        if start:
            self.start(wait=wait)

    # -- configuration ----------------------------------------------------

    def default_config(self):
        return {
            "hostname": "msa.test",
            "domain": "example.org",
            "user": "msa",
            "spool": self.spool,
            "log": {"level": "debug", "target": "stderr"},
            "listen": [
                {"address": "%s:%d" % (HOST, self.port["starttls"]),
                 "tls": "starttls"},
                {"address": "%s:%d" % (HOST, self.port["implicit"]),
                 "tls": "implicit"},
            ],
            "tls": {"certificate": self.cert, "key": self.key,
                    "min_version": "1.2"},
            "auth": {"users": self.passwd, "max_failures": 100},
            "relay": {"mode": "mx", "mx_port": self.dead_port},
            # Nothing answers there: deliveries fail temporarily and
            # accepted messages stay in the spool for inspection.
            "dns": {"nameservers": ["%s:%d" % (HOST, self.dead_port)]},
        }

    def config(self):
        import copy
        return deep_merge(self.default_config(),
                          copy.deepcopy(self.overrides))

    def write_config(self, overrides=None, text=None):
        """Rewrite msa.yaml (with new overrides, or verbatim text)."""
        if overrides is not None:
            self.overrides = overrides
        if text is None:
            text = to_yaml(self.config()) + "\n"
        with open(self.cfgpath, "w") as f:
            f.write(text)
        return self.cfgpath

    def write_users(self, lines=None):
        if lines is not None:
            self.user_lines = list(lines)
        tmp = self.passwd + ".tmp"
        with open(tmp, "w") as f:
            f.write("# msa test users\n")
            for line in self.user_lines:
                f.write(line + "\n")
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.passwd)

    def add_user(self, name, password, slow=False):
        self.user_lines.append(msa_passwd_line(name, password) if slow
                               else htpasswd_line(name, password))
        self.write_users()

    def listen_ports(self):
        out = []
        for item in self.config().get("listen", []):
            m = re.search(r":(\d+)\Z", str(item.get("address", "")))
            if m:
                out.append((int(m.group(1)), item.get("tls", "starttls")))
        return out

    # -- life cycle -------------------------------------------------------

    def start(self, wait=True, timeout=15):
        if self.logf is None:
            self.logf = open(self.logpath, "ab")
        self.logf.write(b"--- msatest: starting msa ---\n")
        self.logf.flush()
        self.proc = subprocess.Popen([MSA, "-c", self.cfgpath],
                                     stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=self.logf,
                                     cwd=self.dir, preexec_fn=_die_with_us)
        _helper_pids.add(self.proc.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _banner_probe(self, port, kind):
        try:
            r = Raw(port, tls=(kind == "implicit"), timeout=3)
        except (OSError, ssl.SSLError):
            return False
        try:
            rep = r.reply()
            if rep.code != 220:
                return False
            r.cmd("QUIT", timeout=3)
            return True
        except (OSError, ssl.SSLError):
            return False
        finally:
            r.close()

    def wait_ready(self, timeout=15):
        """Wait until every listen port is bound and serves a 220 banner,
        the probe sessions are gone, and the children are there."""
        end = time.monotonic() + timeout
        ports = self.listen_ports()
        for port, kind in ports:
            while True:
                if not self.running():
                    raise MsaError("msa exited with status %s during "
                                   "start-up; log:\n%s" % (
                                       self.proc.returncode,
                                       self.log_tail(30)))
                if listen_inodes(port) and self._banner_probe(port, kind):
                    break
                if time.monotonic() > end:
                    raise MsaError("msa is not serving port %d after %ds;"
                                   " log:\n%s" % (port, timeout,
                                                  self.log_tail(30)))
                time.sleep(0.1)
        wait_for(lambda: len(self.children()) >= 4,
                 max(0.5, end - time.monotonic()))
        self.wait_sessions(0, timeout=5)
        return self

    def stop(self, timeout=10, sig=signal.SIGTERM):
        """Signal the parent and wait: its exit status, or None if it had
        to be killed after timeout seconds."""
        if not self.proc:
            return None
        if self.proc.poll() is not None:
            self.kill_all()
            return self.proc.returncode
        tree = self.all_pids()
        kill_quietly(self.proc.pid, sig)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_all()
            return None
        wait_for(lambda: not any(alive(p) for p in tree), 5)
        for p in tree:
            if alive(p):
                kill_quietly(p)
        reap_orphans()
        return status

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    def kill_all(self):
        """SIGKILL every msa process of this instance (parent first, so
        nothing is restarted), and wait until all are gone."""
        if not self.proc:
            return
        seen = set([self.proc.pid]) | set(self.descendants())
        me = os.getpid()
        end = time.monotonic() + 10
        while True:
            for p in [self.proc.pid] + sorted(seen - {self.proc.pid}):
                if alive(p):
                    kill_quietly(p)
            procs = all_procs()
            # Orphans come to us (subreaper); anything forked meanwhile.
            for p, pp in procs.items():
                if pp in seen or (pp == me and p not in _helper_pids):
                    seen.add(p)
            live = [p for p in seen if alive(p)]
            if not live or time.monotonic() > end:
                break
            time.sleep(0.02)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        reap_orphans()

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def hup(self):
        self.signal(signal.SIGHUP)

    def term(self):
        self.signal(signal.SIGTERM)

    # -- processes --------------------------------------------------------

    def children(self):
        """The parent's role children (listener, auth, queue, relay): each
        leads its own process group.  The parent is a subreaper, so an
        orphaned grandchild (a dying sync worker or verifier of a killed
        role) can briefly be its direct child too; that one is not."""
        if not self.running():
            return []
        out = []
        for p in children_of(self.proc.pid):
            try:
                if os.getpgid(p) == p:
                    out.append(p)
            except ProcessLookupError:
                pass
        return out

    def descendants(self):
        return descendants_of(self.proc.pid) if self.proc else []

    def all_pids(self):
        return ([self.proc.pid] if self.running() else []) + \
            self.descendants()

    def listener(self):
        """The child holding the listen sockets (and forking sessions)."""
        inodes = set()
        for port, _ in self.listen_ports():
            inodes |= listen_inodes(port)
        procs = all_procs()
        kids = children_of(self.proc.pid, procs) if self.running() else []
        holders = [c for c in kids if proc_socket_inodes(c) & inodes]
        if len(holders) == 1:
            return holders[0]
        pool = holders or kids
        with_kids = [c for c in pool if children_of(c, procs)]
        if len(with_kids) == 1:
            return with_kids[0]
        return holders[0] if holders else None

    def sessions(self):
        """Session processes (children of the listener)."""
        lst = self.listener()
        return children_of(lst) if lst else []

    def wait_sessions(self, n, timeout=5):
        return wait_for(lambda: len(self.sessions()) == n, timeout) or \
            len(self.sessions()) == n

    def role_map(self):
        """{pid: description} for diagnostics."""
        out = {}
        for p in self.all_pids():
            st = proc_status(p)
            out[p] = "comm=%s uid=%s root=%s" % (
                proc_comm(p), st.get("Uid"), proc_root(p))
        return out

    # -- log --------------------------------------------------------------

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log().splitlines()[-n:])

    def wait_log(self, pattern, timeout=5, start=0):
        """Wait for pattern in the log (from offset start): match or None."""
        def look():
            return re.search(pattern, self.log()[start:], re.M)
        return wait_for(look, timeout, 0.1)

    def log_size(self):
        return len(self.log())

    # -- clients ----------------------------------------------------------

    def smtp(self, kind="starttls", login=None, starttls=None, timeout=10,
             context=None):
        """A connected smtplib client: kind 'starttls' (STARTTLS done when
        starttls is true, or when login is given) or 'implicit'.  login:
        (user, password)."""
        ctx = context or client_context()
        if kind == "implicit":
            s = smtplib.SMTP_SSL(HOST, self.port["implicit"],
                                 local_hostname="client.test",
                                 timeout=timeout, context=ctx)
            s.ehlo()
        else:
            s = smtplib.SMTP(HOST, self.port["starttls"],
                             local_hostname="client.test", timeout=timeout)
            s.ehlo()
            if starttls or (starttls is None and login):
                s.starttls(context=ctx)
                s.ehlo()
        if login:
            s.login(*login)
        return s

    def raw(self, kind="starttls", **kw):
        """A Raw client connected to the port of kind (banner unread)."""
        return Raw(self.port[kind], tls=(kind == "implicit"), **kw)

    def session(self, login=None, kind="starttls", **kw):
        """A Raw client past banner, EHLO, TLS and (if login) AUTH PLAIN.
        Raises MsaError if a step does not get the expected reply."""
        r = self.raw(kind, **kw)
        steps = [("banner", r.reply(), 220), ("EHLO", r.ehlo(), 250)]
        if kind == "starttls":
            steps.append(("STARTTLS", r.cmd("STARTTLS"), 220))
            if steps[-1][1].code == 220:
                r.starttls(kw.get("context"))
                steps.append(("EHLO after TLS", r.ehlo(), 250))
        if login:
            steps.append(("AUTH", r.auth_plain(*login), 235))
        for what, rep, want in steps:
            if rep.code != want:
                r.close()
                raise MsaError("%s: expected %d, got %s" % (what, want, rep))
        return r

    def submit(self, login, sender, rcpts, data, kind="starttls", **kw):
        """One whole submission in a fresh session; the final Reply (or
        the first one that was not the expected answer)."""
        r = self.session(login=login, kind=kind, **kw)
        try:
            replies = r.mail_transaction(sender, rcpts, data)
            try:
                r.cmd("QUIT", timeout=3)
            except OSError:
                pass
        finally:
            r.close()
        return replies[-1]

    # -- spool ------------------------------------------------------------

    def _list(self, sub):
        try:
            return sorted(os.listdir(os.path.join(self.spool, sub)))
        except FileNotFoundError:
            return []

    def queue_files(self):
        return self._list("queue")

    def tmp_files(self):
        return self._list("tmp")

    def queued(self):
        """Committed ids (those with an envelope)."""
        return sorted(f[:-4] for f in self.queue_files()
                      if f.endswith(".env"))

    def message(self, qid):
        def rd(name):
            try:
                with open(os.path.join(self.spool, "queue", name), "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return None
        return Message(qid, rd(qid + ".data"), rd(qid + ".env"))

    def messages(self):
        return [self.message(q) for q in self.queued()]

    def wait_queued(self, n, timeout=5):
        return wait_for(lambda: len(self.queued()) >= n, timeout) and \
            len(self.queued()) >= n

    def spool_bytes(self):
        """Every byte of every file in queue/ and tmp/ (for greps)."""
        out = b""
        for sub in ("queue", "tmp"):
            for f in self._list(sub):
                try:
                    with open(os.path.join(self.spool, sub, f), "rb") as fh:
                        out += fh.read()
                except OSError:
                    pass
        return out

    # -- cleanup ----------------------------------------------------------

    def cleanup(self):
        if self.proc and (self.proc.poll() is None or self.descendants()):
            self.kill_all()
        if self.logf:
            self.logf.close()
            self.logf = None


# ---------------------------------------------------------------------------
# Helper servers for relay tests (fakedns.py, smtpsink.py)


class _Helper:
    script = None
    name = "helper"

    def _start(self, args, timeout=10):
        """Start script with --port-file (it writes its port there)."""
        if not getattr(self, "dir", None):
            self.dir = tempfile.mkdtemp(prefix="msatest-%s-" % self.name)
            os.chmod(self.dir, 0o755)
            _tmpdirs.append(self.dir)
        self.portfile = os.path.join(self.dir, "port")
        self.logpath = os.path.join(self.dir, "log")
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(
            [PYTHON, os.path.join(TESTDIR, self.script),
             "--port-file", self.portfile] + args,
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        _helper_pids.add(self.proc.pid)
        _helpers.append(self)

        def port_written():
            try:
                with open(self.portfile) as f:
                    return f.read().strip()
            except OSError:
                return ""
        end = time.monotonic() + timeout
        while not port_written():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise MsaError("%s did not start:\n%s" % (
                    self.script, self.log()))
            time.sleep(0.05)
        self.port = int(port_written())

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.logf:
            self.logf.close()
            self.logf = None


_helpers = []


class FakeDNS(_Helper):
    """fakedns.py on 127.0.0.1 (UDP+TCP) serving records given as lines
    ("example.net MX 10 mx1.example.net", "mx1.example.net A 127.0.0.1",
    "null.example MX 0 .", "broken.example SERVFAIL"); any other name is
    NXDOMAIN.  queries() lists what was asked."""

    script = "fakedns.py"
    name = "dns"

    def __init__(self, zone, port=0):
        args = ["--port", str(port)]
        for rec in zone:
            args += ["--record", rec]
        self._start(args)

    @property
    def nameserver(self):
        return "%s:%d" % (HOST, self.port)

    def queries(self):
        """[(qname, qtype, rcode)] in order."""
        out = []
        for ln in self.log().splitlines():
            if ln.startswith("query "):
                f = ln.split()
                out.append((f[1], f[2], f[3] if len(f) > 3 else ""))
        return out


class SmtpSink(_Helper):
    """smtpsink.py on 127.0.0.1: records every accepted message under
    self.maildir; args are smtpsink.py options, e.g.
    ["--rcpt", "bad@*=550 5.1.1 no such user", "--starttls"]."""

    script = "smtpsink.py"
    name = "sink"

    def __init__(self, args=(), port=0, cert=None):
        self.dir = tempfile.mkdtemp(prefix="msatest-sink-")
        os.chmod(self.dir, 0o755)
        _tmpdirs.append(self.dir)
        self.maildir = os.path.join(self.dir, "mail")
        args = list(args)
        if cert is not None:
            args += ["--cert", cert[0], "--key", cert[1]]
        elif any(a in ("--starttls", "--implicit-tls") for a in args):
            c, k = shared_cert()
            args += ["--cert", c, "--key", k]
        self._start(["--port", str(port), "--dir", self.maildir] + args)

    def received(self):
        """Every accepted message, oldest first: the JSON record written
        by smtpsink.py (mail_from, rcpt_tos, helo, tls, auth, ...) plus
        'data' (the bytes received)."""
        out = []
        try:
            names = sorted(os.listdir(self.maildir))
        except FileNotFoundError:
            return out
        for n in names:
            if n.endswith(".json"):
                with open(os.path.join(self.maildir, n)) as f:
                    rec = json.load(f)
                with open(os.path.join(self.maildir, n[:-5] + ".eml"),
                          "rb") as f:
                    rec["data"] = f.read()
                out.append(rec)
        return out

    def events(self):
        """Every logged event (connect, mail, rcpt, data, ...) as dicts."""
        out = []
        for ln in self.log().splitlines():
            if ln.startswith("event "):
                out.append(json.loads(ln[len("event "):]))
        return out

    def wait_received(self, n, timeout=10):
        return wait_for(lambda: len(self.received()) >= n, timeout) and \
            len(self.received()) >= n


# ---------------------------------------------------------------------------
# Relay tests (70-74): mail hosts on loopback aliases, certificates signed
# by a test CA, key=value log lines, msa queue, RFC 3464 reports

def free_port_on(hosts, tries=200):
    """A TCP port free on every address of hosts at once (relay.mx_port is
    shared by every MX host, so each fake MX listens on its own loopback
    address, 127.0.0.N, on that one port)."""
    for _ in range(tries):
        port = free_port()
        socks = []
        try:
            for h in hosts:
                s = socket.socket(socket.AF_INET6 if ":" in h else
                                  socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((h, port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise MsaError("no port free on all of %s" % (hosts,))


def have_ipv6():
    """True if a TCP socket can listen on ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
            s.listen()
        return True
    except OSError:
        return False


def make_ca(directory, name="ca", cn="msatest CA"):
    """A fresh self-signed CA (P-256); (cert, key) paths."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    p = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-days", "3650", "-nodes",
             "-subj", "/CN=%s" % cn,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", key, "-out", cert])
    if p.returncode != 0:
        raise RuntimeError("openssl req (CA) failed: %s" % p.stderr)
    os.chmod(key, 0o600)
    return cert, key


def make_signed_cert(directory, ca, name="leaf", dns=("localhost",),
                     ips=("127.0.0.1",)):
    """A server certificate for dns names and ips signed by ca (a
    (cert, key) pair from make_ca); (cert, key) paths."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    ext = os.path.join(directory, name + ".ext")
    san = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
        if san:
            f.write("subjectAltName=%s\n" % ",".join(san))
    cn = (list(dns) + list(ips) + [name])[0]
    p = run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=%s" % cn,
             "-keyout", key, "-out", csr])
    if p.returncode != 0:
        raise RuntimeError("openssl req (leaf) failed: %s" % p.stderr)
    p = run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0],
             "-CAkey", ca[1], "-CAcreateserial", "-days", "3650",
             "-extfile", ext, "-out", cert])
    if p.returncode != 0:
        raise RuntimeError("openssl x509 (sign) failed: %s" % p.stderr)
    os.chmod(key, 0o600)
    return cert, key


_KV = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def kv_parse(line):
    """{key: value} of a `key=value key="quoted value"` log line."""
    out = {}
    for k, v in _KV.findall(line):
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        out.setdefault(k, v)
    return out


def log_events(text, event=None, **match):
    """Log lines of text (msa's stderr log) as dicts, those whose event=
    is event (any if None) and whose keys equal every key=value of match
    (a value may be a compiled regex, searched)."""
    out = []
    for line in text.splitlines():
        if "event=" not in line:
            continue
        kv = kv_parse(line)
        if event is not None and kv.get("event") != event:
            continue
        good = True
        for k, want in match.items():
            got = kv.get(k)
            if hasattr(want, "search"):
                good = got is not None and want.search(got) is not None
            else:
                good = got == want
            if not good:
                break
        if good:
            kv["_line"] = line
            out.append(kv)
    return out


def wait_events(m, event, n=1, timeout=10, **match):
    """Wait until m's log has at least n such events; the list."""
    def look():
        ev = log_events(m.log(), event, **match)
        return ev if len(ev) >= n else None
    return wait_for(look, timeout, 0.1) or log_events(m.log(), event, **match)


def queue_cmd(m, *args, timeout=30):
    """`msa -c <m's config> queue ARGS...`: CompletedProcess (text)."""
    return run_msa("-c", m.cfgpath, "queue", *args, timeout=timeout)


def wait_spool_empty(m, timeout=10):
    """Wait until m's queue/ directory holds no file at all."""
    return wait_for(lambda: not m.queue_files(), timeout, 0.1) or \
        not m.queue_files()


class Dsn:
    """A delivery status notification (RFC 3464 / RFC 6522) parsed by hand
    so a test can say exactly which field is wrong.

    head: {lower-case name: [unfolded values]} of the top header section;
    content_type: the top Content-Type value; params: its parameters
    (lower-case names); parts: [(headers dict, body bytes)] in order;
    per_message: {Field: value} of the first group of the
    message/delivery-status part; per_recipient: [{Field: value}] of the
    following groups (field names as written); error: why it could not be
    parsed, or None."""

    def __init__(self, data):
        self.data = data
        self.error = None
        self.head = {}
        self.content_type = ""
        self.params = {}
        self.parts = []
        self.per_message = {}
        self.per_recipient = []
        try:
            self._parse()
        except Exception as e:  # a test reports it, it must not die
            self.error = "%s: %s" % (type(e).__name__, e)

    @staticmethod
    def _fields(text):
        """[(name, value)] of a header block (str), unfolded."""
        text = re.sub(r"\r?\n[ \t]+", " ", text)
        out = []
        for line in re.split(r"\r?\n", text):
            if not line.strip():
                continue
            k, sep, v = line.partition(":")
            if sep:
                out.append((k.strip(), v.strip()))
        return out

    @staticmethod
    def _ctype(value):
        main, _, rest = value.partition(";")
        params = {}
        for m in re.finditer(r'([A-Za-z0-9_-]+)\s*=\s*("[^"]*"|[^;\s]+)',
                             rest):
            v = m.group(2)
            params[m.group(1).lower()] = v[1:-1] if v.startswith('"') \
                else v
        return main.strip().lower(), params

    def _parse(self):
        head, body = split_message(self.data)
        for k, v in self._fields(head.decode("utf-8", "replace")):
            self.head.setdefault(k.lower(), []).append(v)
        self.content_type, self.params = self._ctype(
            (self.head.get("content-type") or [""])[0])
        boundary = self.params.get("boundary")
        if not boundary:
            self.error = "no boundary parameter"
            return
        delim = b"--" + boundary.encode()
        chunks = re.split(b"(?:^|\r?\n)" + re.escape(delim), body)
        if len(chunks) < 2:
            self.error = "boundary never used"
            return
        for chunk in chunks[1:]:
            if chunk.startswith(b"--"):
                break  # close delimiter
            chunk = re.sub(rb"\A[ \t]*\r?\n", b"", chunk, count=1)
            ph, pb = split_message(chunk)
            hdrs = {}
            for k, v in self._fields(ph.decode("utf-8", "replace")):
                hdrs.setdefault(k.lower(), []).append(v)
            self.parts.append((hdrs, pb))
        for hdrs, pb in self.parts:
            ct, _ = self._ctype((hdrs.get("content-type") or
                                 ["text/plain"])[0])
            if ct == "message/delivery-status":
                groups = [g for g in re.split(
                    r"\r?\n[ \t]*\r?\n", pb.decode("utf-8", "replace"))
                    if g.strip()]
                if groups:
                    self.per_message = dict(self._fields(groups[0]))
                    self.per_recipient = [dict(self._fields(g))
                                          for g in groups[1:]]
                break

    def part_types(self):
        return [self._ctype((h.get("content-type") or ["text/plain"])[0])[0]
                for h, _ in self.parts]

    def part(self, ctype):
        """Body bytes of the first part of that content type, or None."""
        for h, b in self.parts:
            if self._ctype((h.get("content-type") or
                            ["text/plain"])[0])[0] == ctype:
                return b
        return None

    def header(self, name):
        v = self.head.get(name.lower())
        return v[0] if v else None

    def recipient(self, addr):
        """The per-recipient group whose Final-Recipient names addr."""
        for g in self.per_recipient:
            fr = g.get("Final-Recipient", "")
            if fr.split(";", 1)[-1].strip().strip("<>").lower() == \
                    addr.lower():
                return g
        return None


def dsns_about(sink, subject):
    """DSNs received by sink (a Sink) whose returned headers carry
    Subject: subject; each has .envelope, the sink's record of it."""
    out = []
    for x in sink.received():
        d = Dsn(x["data"])
        h = d.part("text/rfc822-headers") or b""
        if re.search(rb"(?m)^Subject: " + re.escape(subject.encode()) +
                     rb"\r?$", h):
            d.envelope = x
            out.append(d)
    return out


# ---------------------------------------------------------------------------
# Fault injection (80-sigsys.t ... 84-garbage.t)

_cleanup_hooks = []


def at_cleanup(fn):
    """Call fn() at cleanup, after every msa instance and helper is gone
    and before the temporary directories are removed (last in, first
    out), also when the test dies or times out."""
    _cleanup_hooks.append(fn)


def mount_tmpfs(path, size="2m", mode="0755"):
    """Mount a fresh tmpfs of size on path (created if missing; root
    only); it is unmounted at cleanup."""
    os.makedirs(path, exist_ok=True)
    p = run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=%s" % (size, mode),
             "msatest", path])
    if p.returncode != 0:
        raise MsaError("mount -t tmpfs on %s failed: %s" % (path,
                                                            p.stderr))

    def umount():
        if run(["umount", path]).returncode != 0:
            run(["umount", "-l", path])
    at_cleanup(umount)
    return path


def fs_free(path):
    """Bytes a non-root writer could still put on path's filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill_fs(path, chunk=65536):
    """Write the file path until its filesystem is full (ENOSPC); the
    number of bytes written."""
    import errno
    n = 0
    block = b"\0" * chunk
    with open(path, "wb", buffering=0) as f:
        size = chunk
        while size >= 1:
            try:
                w = f.write(block[:size])
                n += w
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                size //= 2
        f.flush()
    return n


def source_connect(port, source, timeout=10):
    """A plain TCP socket to HOST:port from the loopback address source
    (127.0.0.2 ...)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((HOST, port))
    return s


def _msa_role_pid(self, role):
    """The pid of the parent's child named msa-ROLE (listener, auth, queue,
    relay), or None.  A child that has not yet confined itself has no
    role name."""
    for p in self.children():
        if proc_comm(p) == "msa-" + role:
            return p
    return None


def _msa_wait_role(self, role, timeout=10, exclude=()):
    """Wait for a confined (NoNewPrivs 1, Seccomp 2) child msa-ROLE whose
    pid is not in exclude: its pid, or None."""
    def look():
        p = self.role_pid(role)
        if p is None or p in exclude:
            return None
        st = proc_status(p)
        if st.get("NoNewPrivs") == "1" and st.get("Seccomp") == "2":
            return p
        return None
    return wait_for(look, timeout, 0.05)


def _msa_child_deaths(self, start=0):
    """[(child, 'signal=N' or 'exit=N')] of every event=child-died the
    parent logged from log offset start."""
    return re.findall(r"event=child-died child=(\S+) (\S+)",
                      self.log()[start:])


def _msa_queue_cmd(self, *args, timeout=30):
    """`msa -c msa.yaml queue ARGS...`: CompletedProcess (text)."""
    return run_msa("-c", self.cfgpath, "queue", *args, timeout=timeout)


def _msa_submit_retry(self, login, sender, rcpts, data, timeout=15,
                      **kw):
    """submit() until it gets 250 or timeout passes (a restarting daemon
    may refuse or drop the first tries): (True, Reply) or (False, last
    Reply or exception)."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = self.submit(login, sender, rcpts, data, **kw)
            if last.code == 250:
                return True, last
        except (OSError, ssl.SSLError, MsaError) as e:
            last = e
        time.sleep(0.2)
    return False, last


def submit_subject(m, login, sender, rcpts, subject):
    """Submit a small message identified by its subject and assert it was
    queued; its queue id (or None)."""
    data = make_message(frm=sender, to=", ".join(rcpts), subject=subject,
                        body="Body of %s.\n" % subject)
    r = m.submit(login, sender, rcpts, data)
    qid = queue_id(r)
    ok(r.code == 250 and qid, "%s: accepted (%s)" % (subject, r))
    return qid


Msa.role_pid = _msa_role_pid
Msa.wait_role = _msa_wait_role
Msa.child_deaths = _msa_child_deaths
Msa.queue_cmd = _msa_queue_cmd
Msa.submit_retry = _msa_submit_retry


# ---------------------------------------------------------------------------
# Cleanup


def _cleanup():
    for h in list(_helpers):
        try:
            h.stop()
        except Exception:
            pass
    for m in list(_instances):
        try:
            m.cleanup()
        except Exception as e:
            diag("cleanup of %s failed: %s" % (m.dir, e))
    if _tap.failed:
        for m in _instances:
            diag("--- last lines of %s ---" % m.logpath, m.log_tail(60))
    # Anything of ours still running (orphans adopted as subreaper).
    me = os.getpid()
    for p, pp in all_procs().items():
        if pp == me and p not in _helper_pids:
            kill_quietly(p)
    reap_orphans()
    while _cleanup_hooks:
        fn = _cleanup_hooks.pop()
        try:
            fn()
        except Exception as e:
            diag("cleanup hook %r failed: %s" % (fn, e))
    if KEEP:
        for d in _tmpdirs:
            diag("kept %s" % d)
    else:
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
    _instances.clear()
    _tmpdirs.clear()
    _helpers.clear()


import atexit  # noqa: E402

atexit.register(_cleanup)


def _on_term(signum, frame):
    _cleanup()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)
signal.signal(signal.SIGHUP, _on_term)
