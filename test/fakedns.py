#!/usr/bin/python3
"""fakedns.py - a tiny authoritative DNS server for msa's relay tests.

Serves a zone given on the command line (--record, repeatable) or in a file
(--zone FILE: one record per line, '#' comments; or a JSON list of record
strings, or {"records": [...]}) over UDP and TCP on 127.0.0.1.

Record syntax:  NAME TYPE DATA...   (names are case-insensitive, a trailing
dot is optional)

    example.net      MX    10 mx1.example.net
    null.example     MX    0 .                 (null MX, RFC 7505)
    mx1.example.net  A     127.0.0.1
    mx1.example.net  AAAA  ::1
    alias.example    CNAME mx1.example.net
    example.net      TXT   "v=spf1 -all"
    broken.example   SERVFAIL [QTYPE]          (answer SERVFAIL)
    slow.example     TIMEOUT  [QTYPE]          (never answer)
    gone.example     REFUSED  [QTYPE]

A name that has records but none of the asked type gets NOERROR with an
empty answer; any other name gets NXDOMAIN.  CNAMEs are followed inside the
zone.  Each query is logged on stdout as
    query QNAME QTYPE RCODE PROTO
--port 0 picks a free port (the same for UDP and TCP); --port-file FILE
receives the port number once the server is ready.
"""

import argparse
import json
import socket
import sys
import threading

from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel
from dnslib.dns import DNSError
from dnslib.server import DNSHandler, DNSLogger, TCPServer, UDPServer

SPECIAL = {"SERVFAIL": RCODE.SERVFAIL, "REFUSED": RCODE.REFUSED,
           "TIMEOUT": None}


def norm(name):
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def parse_record(line):
    """'NAME TYPE DATA...' -> (name, type, data tokens)."""
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise ValueError("record needs NAME TYPE DATA: %r" % line)
    name, rtype = norm(parts[0]), parts[1].upper()
    data = parts[2].strip() if len(parts) > 2 else ""
    if rtype in SPECIAL:
        return name, rtype, data.upper()
    if rtype == "MX":
        pref, _, host = data.partition(" ")
        return name, rtype, (int(pref), norm(host.strip() or "."))
    if rtype in ("A", "AAAA"):
        socket.inet_pton(socket.AF_INET if rtype == "A" else socket.AF_INET6,
                         data)
        return name, rtype, data
    if rtype == "CNAME":
        return name, rtype, norm(data)
    if rtype == "TXT":
        if len(data) >= 2 and data[0] == data[-1] == '"':
            data = data[1:-1]
        return name, rtype, data
    raise ValueError("unsupported record type %s in %r" % (rtype, line))


def load_zone_file(path):
    with open(path) as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        obj = json.loads(text)
        if isinstance(obj, dict):
            obj = obj.get("records", [])
        return [str(x) for x in obj]
    return [ln for ln in (x.split("#", 1)[0].strip()
                          for x in text.splitlines()) if ln]


class Drop(DNSError):
    pass


class ZoneResolver:
    def __init__(self, records, ttl):
        self.records = records
        self.ttl = ttl
        self.names = {r[0] for r in records}

    def _rr(self, name, rtype, data):
        if rtype == "MX":
            rdata = MX(DNSLabel(data[1]), data[0])
        elif rtype == "A":
            rdata = A(data)
        elif rtype == "AAAA":
            rdata = AAAA(data)
        elif rtype == "CNAME":
            rdata = CNAME(DNSLabel(data))
        else:
            rdata = TXT(data)
        return RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=self.ttl)

    def _special(self, name, qtype):
        for n, t, d in self.records:
            if n == name and t in SPECIAL and (not d or d == qtype):
                return t
        return None

    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.aa = 1
        qname = norm(str(request.q.qname))
        qtype = QTYPE.get(request.q.qtype, str(request.q.qtype))
        name, seen = qname, set()
        rcode = RCODE.NOERROR
        while True:
            special = self._special(name, qtype)
            if special == "TIMEOUT":
                handler.server.logger.note(qname, qtype, "TIMEOUT")
                raise Drop("dropped on purpose")
            if special:
                rcode = SPECIAL[special]
                break
            hits = [r for r in self.records if r[0] == name and
                    (r[1] == qtype or qtype == "ANY") and r[1] not in SPECIAL]
            for r in hits:
                reply.add_answer(self._rr(*r))
            if hits:
                break
            cname = [r for r in self.records if r[0] == name and
                     r[1] == "CNAME"]
            if cname and qtype != "CNAME" and name not in seen:
                seen.add(name)
                reply.add_answer(self._rr(*cname[0]))
                name = cname[0][2]
                continue
            if name not in self.names:
                rcode = RCODE.NXDOMAIN
            break
        reply.header.rcode = rcode
        handler.server.logger.note(qname, qtype, RCODE.get(rcode))
        return reply


class QueryLogger(DNSLogger):
    def __init__(self):
        super().__init__("-recv,-send,-request,-reply,-truncated,-error,"
                         "-data")
        self.lock = threading.Lock()

    def note(self, qname, qtype, rcode, proto=""):
        with self.lock:
            sys.stdout.write("query %s %s %s\n" % (qname, qtype, rcode))
            sys.stdout.flush()


def bind_pair(host, port):
    """UDP and TCP servers on the same port (port 0: pick one)."""
    for _ in range(50):
        udp = UDPServer((host, port), DNSHandler)
        p = udp.server_address[1]
        try:
            tcp = TCPServer((host, p), DNSHandler)
        except OSError:
            udp.server_close()
            if port:
                raise
            continue
        return udp, tcp
    raise OSError("no free port for UDP and TCP")


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Record syntax: NAME TYPE DATA, e.g. 'example.net MX 10 "
        "mx1.example.net', 'mx1.example.net A 127.0.0.1', 'null.example "
        "MX 0 .', 'x.example SERVFAIL', 'y.example TIMEOUT MX'. Unknown "
        "names are NXDOMAIN.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind")
    ap.add_argument("--port", type=int, default=0,
                    help="UDP and TCP port (0: pick a free one)")
    ap.add_argument("--port-file", help="write the port here when ready")
    ap.add_argument("--record", action="append", default=[],
                    metavar="'NAME TYPE DATA'", help="a record (repeatable)")
    ap.add_argument("--zone", action="append", default=[], metavar="FILE",
                    help="records from a file (lines or JSON list)")
    ap.add_argument("--ttl", type=int, default=60)
    args = ap.parse_args()

    lines = list(args.record)
    for path in args.zone:
        lines += load_zone_file(path)
    try:
        records = [parse_record(x) for x in lines]
    except (ValueError, OSError) as e:
        ap.error(str(e))

    logger = QueryLogger()
    udp, tcp = bind_pair(args.host, args.port)
    for srv in (udp, tcp):
        srv.resolver = ZoneResolver(records, args.ttl)
        srv.logger = logger
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = udp.server_address[1]
    sys.stdout.write("fakedns: serving %d records on %s:%d udp+tcp\n" % (
        len(records), args.host, port))
    sys.stdout.flush()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        import os
        os.rename(args.port_file + ".tmp", args.port_file)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    main()
