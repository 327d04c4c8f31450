#!/usr/bin/python3
"""smtpsink.py - a receiving SMTP server for msa's relay tests (aiosmtpd).

Listens on 127.0.0.1, records every accepted message in --dir as
NNNNNN.eml (the bytes received, after dot-unstuffing) and NNNNNN.json
(mail_from, rcpt_tos accepted, rcpt_refused, mail_options, helo, peer, tls
version or null, auth login or null, time), and answers by rules:

  --rcpt 'GLOB=REPLY[;times=N]'   reply to RCPT TO addresses matching GLOB
                                  (fnmatch, case-insensitive), e.g.
                                  'bad@*=550 5.1.1 no such user',
                                  'later@*=451 4.3.0 try again;times=1'
                                  (first N matches only, then 250).
                                  Rules are tried in order; no match: 250.
  --mail 'REPLY[;times=N]'        reply to MAIL FROM instead of 250
  --data 'REPLY[;times=N]'        final reply after the data instead of 250
  --greeting 'REPLY'              answer the connection with this (e.g.
                                  '421 4.3.2 go away') and close it
  --starttls                      offer STARTTLS (--cert/--key)
  --implicit-tls                  TLS from the first byte (--cert/--key)
  --require-tls                   refuse MAIL before STARTTLS (530)
  --auth USER:PASSWORD            require AUTH PLAIN/LOGIN with this login
                                  (only after TLS unless --auth-without-tls;
                                  an --implicit-tls port is TLS throughout)
  --size N                        advertise and enforce SIZE N
  --no-ehlo                       answer EHLO with 502 (HELO fallback)
  --pipelining                    advertise PIPELINING (RFC 2920; commands
                                  are read line by line either way)

Every protocol event is logged on stdout as one line `event {json}`
(connect, helo, auth, mail, rcpt, data, disconnect) with the reply sent.
--port 0 picks a free port; --port-file FILE receives it once listening.
"""

import argparse
import asyncio
import fnmatch
import json
import os
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def log_event(kind, **fields):
    fields["event"] = kind
    fields["time"] = round(time.time(), 3)
    sys.stdout.write("event %s\n" % json.dumps(fields, sort_keys=True))
    sys.stdout.flush()


class Rule:
    """PATTERN=REPLY[;times=N] (pattern optional for --mail/--data)."""

    def __init__(self, text, with_pattern=True):
        self.pattern = "*"
        if with_pattern:
            self.pattern, sep, text = text.partition("=")
            if not sep:
                raise ValueError("rule needs GLOB=REPLY: %r" % text)
            self.pattern = self.pattern.strip().lower()
        self.times = None
        reply, sep, opts = text.partition(";")
        for opt in filter(None, (o.strip() for o in opts.split(";"))):
            k, _, v = opt.partition("=")
            if k != "times":
                raise ValueError("unknown rule option %r" % opt)
            self.times = int(v)
        self.reply = reply.strip()
        if not (len(self.reply) >= 3 and self.reply[:3].isdigit()):
            raise ValueError("reply must start with a code: %r" % reply)

    def take(self, value="*"):
        if not fnmatch.fnmatchcase(value.lower(), self.pattern):
            return None
        if self.times is not None:
            if self.times <= 0:
                return None
            self.times -= 1
        return self.reply


def first_reply(rules, value="*"):
    for r in rules:
        reply = r.take(value)
        if reply is not None:
            return reply
    return None


def tls_version(server):
    obj = server.transport.get_extra_info("ssl_object") \
        if server.transport else None
    return obj.version() if obj is not None else None


class Sink:
    def __init__(self, args):
        self.args = args
        self.rcpt_rules = [Rule(x) for x in args.rcpt]
        self.mail_rules = [Rule(x, False) for x in args.mail]
        self.data_rules = [Rule(x, False) for x in args.data]
        self.count = 0
        os.makedirs(args.dir, exist_ok=True)
        existing = [n for n in os.listdir(args.dir) if n.endswith(".json")]
        self.count = len(existing)

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname
        if self.args.pipelining and "250-PIPELINING" not in responses:
            # Before the last line (which must stay "250 HELP").
            responses.insert(max(1, len(responses) - 1), "250-PIPELINING")
        log_event("helo", verb="EHLO", name=hostname, tls=tls_version(server))
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        log_event("helo", verb="HELO", name=hostname, tls=tls_version(server))
        return "250 %s" % server.hostname

    async def handle_MAIL(self, server, session, envelope, address,
                          mail_options):
        reply = first_reply(self.mail_rules) or "250 2.1.0 Ok"
        log_event("mail", address=address, options=mail_options, reply=reply,
                  tls=tls_version(server))
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(mail_options)
            envelope.rcpt_refused = []
        return reply

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        reply = first_reply(self.rcpt_rules, address) or "250 2.1.5 Ok"
        log_event("rcpt", address=address, options=rcpt_options, reply=reply)
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.append(rcpt_options)
        else:
            getattr(envelope, "rcpt_refused", []).append(
                {"address": address, "reply": reply})
        return reply

    async def handle_DATA(self, server, session, envelope):
        reply = first_reply(self.data_rules) or None
        data = envelope.original_content or b""
        if reply is None or reply.startswith("2"):
            self.count += 1
            base = os.path.join(self.args.dir, "%06d" % self.count)
            auth = session.auth_data
            if isinstance(auth, LoginPassword):
                auth = auth.login.decode("utf-8", "replace")
            record = {
                "mail_from": envelope.mail_from,
                "mail_options": envelope.mail_options,
                "rcpt_tos": envelope.rcpt_tos,
                "rcpt_refused": getattr(envelope, "rcpt_refused", []),
                "helo": session.host_name,
                "peer": list(session.peer) if session.peer else None,
                "tls": tls_version(server),
                "auth": auth if session.authenticated else None,
                "size": len(data),
                "time": time.time(),
            }
            with open(base + ".eml.tmp", "wb") as f:
                f.write(data)
            os.rename(base + ".eml.tmp", base + ".eml")
            with open(base + ".json.tmp", "w") as f:
                json.dump(record, f, indent=1, sort_keys=True)
            os.rename(base + ".json.tmp", base + ".json")
            reply = reply or "250 2.0.0 Ok: stored as %06d" % self.count
        log_event("data", size=len(data), reply=reply,
                  rcpt_tos=envelope.rcpt_tos)
        return reply

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        want_user, _, want_pw = self.args.auth.partition(":")
        good = isinstance(auth_data, LoginPassword) and \
            auth_data.login.decode("utf-8", "replace") == want_user and \
            auth_data.password.decode("utf-8", "replace") == want_pw
        log_event("auth", mechanism=mechanism, success=good,
                  login=auth_data.login.decode("utf-8", "replace")
                  if isinstance(auth_data, LoginPassword) else None)
        # handled=False: aiosmtpd then sends its own 535 on failure.
        return AuthResult(success=good, handled=False, auth_data=auth_data)


class SinkSMTP(SMTP):
    no_ehlo = False

    def connection_made(self, transport):
        fresh = self.transport is None
        super().connection_made(transport)
        if fresh:
            log_event("connect", peer=list(self.session.peer or []))

    def connection_lost(self, error):
        log_event("disconnect", peer=list(self.session.peer or [])
                  if self.session else None)
        super().connection_lost(error)

    async def smtp_EHLO(self, hostname):
        if self.no_ehlo:
            log_event("helo", verb="EHLO", name=hostname, reply="502")
            await self.push("502 5.5.1 EHLO not implemented")
            return
        await super().smtp_EHLO(hostname)


class Refuser(asyncio.Protocol):
    """Answers every connection with one reply and closes it."""

    def __init__(self, reply):
        self.reply = reply

    def connection_made(self, transport):
        log_event("connect", peer=list(transport.get_extra_info("peername")),
                  reply=self.reply)
        transport.write((self.reply + "\r\n").encode())
        transport.close()


def server_context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split(
            "\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: pick a free one")
    ap.add_argument("--port-file", help="write the port here when listening")
    ap.add_argument("--dir", required=True, help="where messages are stored")
    ap.add_argument("--hostname", default="sink.test",
                    help="name in the banner and EHLO")
    ap.add_argument("--rcpt", action="append", default=[],
                    metavar="'GLOB=REPLY[;times=N]'")
    ap.add_argument("--mail", action="append", default=[],
                    metavar="'REPLY[;times=N]'")
    ap.add_argument("--data", action="append", default=[],
                    metavar="'REPLY[;times=N]'")
    ap.add_argument("--greeting", metavar="REPLY",
                    help="refuse each connection with this reply")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--require-tls", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--auth", metavar="USER:PASSWORD")
    ap.add_argument("--auth-without-tls", action="store_true")
    ap.add_argument("--size", type=int, default=0,
                    help="SIZE limit to advertise and enforce (0: 32 MiB)")
    ap.add_argument("--no-ehlo", action="store_true")
    ap.add_argument("--pipelining", action="store_true",
                    help="advertise PIPELINING")
    args = ap.parse_args()
    if (args.starttls or args.implicit_tls) and not (args.cert and args.key):
        ap.error("--starttls/--implicit-tls need --cert and --key")
    try:
        sink = Sink(args)
    except ValueError as e:
        ap.error(str(e))

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ctx = server_context(args) if args.cert and args.key else None
    SinkSMTP.no_ehlo = args.no_ehlo

    def factory():
        if args.greeting:
            return Refuser(args.greeting)
        kw = dict(hostname=args.hostname, ident="smtpsink", loop=loop,
                  data_size_limit=args.size or 2 ** 25, timeout=60)
        if args.starttls:
            kw["tls_context"] = ctx
            kw["require_starttls"] = args.require_tls
        if args.auth:
            # aiosmtpd only counts STARTTLS as TLS: on an implicit-TLS
            # port the connection is encrypted from the first byte.
            kw.update(authenticator=sink.authenticator, auth_required=True,
                      auth_require_tls=not (args.auth_without_tls or
                                            args.implicit_tls))
        return SinkSMTP(sink, **kw)

    server = loop.run_until_complete(loop.create_server(
        factory, host=args.host, port=args.port,
        ssl=ctx if args.implicit_tls else None))
    port = server.sockets[0].getsockname()[1]
    log_event("listening", host=args.host, port=port,
              starttls=args.starttls, implicit_tls=args.implicit_tls)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.rename(args.port_file + ".tmp", args.port_file)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_signal_handler(signal.SIGINT, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
