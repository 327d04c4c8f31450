#!/bin/sh
# devsetup.sh DIR - a development setup for `make run` (idempotent).
#
# Creates, where missing:
#   DIR/cert.pem, DIR/key.pem  self-signed P-256 certificate for localhost
#                              and 127.0.0.1, valid ten years
#   DIR/demo-password          a random password for the login `demo`
#                              (mode 0600), printed on every run
#   DIR/passwd                 password file with demo's hash, made with
#                              `./msa passwd demo` (mode 0600)
#   DIR/spool/                 the queue (msa fixes its modes at start)
#   DIR/msa.yaml               hostname/domain localhost, user msa,
#                              listen 127.0.0.1:2587 (STARTTLS) and
#                              127.0.0.1:2465 (implicit TLS), relay mode mx
#                              with mx_port 2525, so nothing that is
#                              submitted leaves this machine by accident.
# Existing files are kept; delete DIR to start over.  The binary is
# $MSA if set, else ./msa next to this script's directory.
# Then: ./msa -c DIR/msa.yaml   (which `make run` does)
set -eu

if [ $# -ne 1 ]; then
	echo "usage: $0 DIR" >&2
	exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)
msa=${MSA:-$here/../msa}
if [ ! -x "$msa" ]; then
	echo "devsetup: $msa is not built (run make msa)" >&2
	exit 1
fi
mkdir -p "$1"
dir=$(cd "$1" && pwd)
chmod 0755 "$dir"
umask 077

if [ ! -s "$dir/cert.pem" ] || [ ! -s "$dir/key.pem" ]; then
	echo "devsetup: making a self-signed certificate in $dir"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
	    -days 3650 -nodes -subj /CN=localhost \
	    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
	    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	chmod 0644 "$dir/cert.pem"
	chmod 0600 "$dir/key.pem"
fi

if [ ! -s "$dir/demo-password" ] || [ ! -s "$dir/passwd" ] ||
    ! grep -q '^demo:' "$dir/passwd"; then
	pw=$(openssl rand -base64 18 | tr -d '/+=\n' | cut -c1-16)
	line=$(printf '%s\n' "$pw" | "$msa" passwd demo) || {
		echo "devsetup: '$msa passwd demo' failed" >&2
		exit 1
	}
	case $line in
	demo:\$2*) ;;
	*)
		echo "devsetup: unexpected output from msa passwd: $line" >&2
		exit 1
		;;
	esac
	printf '%s\n' "$pw" >"$dir/demo-password.tmp"
	mv "$dir/demo-password.tmp" "$dir/demo-password"
	{
		echo "# msa password file: name:bcrypt-hash (add: msa passwd NAME)"
		printf '%s\n' "$line"
	} >"$dir/passwd.tmp"
	mv "$dir/passwd.tmp" "$dir/passwd"
fi
chmod 0600 "$dir/demo-password" "$dir/passwd"

mkdir -p "$dir/spool"
chmod 0755 "$dir/spool"

if [ ! -s "$dir/msa.yaml" ]; then
	umask 022
	cat >"$dir/msa.yaml" <<EOF
# Development configuration made by test/devsetup.sh (edit freely; delete
# it to get this one back).  Mail for other hosts goes to port 2525 of
# their MX, where nothing normally listens: it stays in the queue.
hostname: localhost
domain: localhost
user: msa
spool: "$dir/spool"
log:
  level: debug
  target: stderr
listen:
  - { address: "127.0.0.1:2587", tls: starttls }
  - { address: "127.0.0.1:2465", tls: implicit }
tls:
  certificate: "$dir/cert.pem"
  key: "$dir/key.pem"
auth:
  users: "$dir/passwd"
relay:
  mode: mx
  mx_port: 2525
EOF
fi

pw=$(cat "$dir/demo-password")
cat <<EOF

========================================================================
 msa development setup in $dir
   login:     demo
   password:  $pw
   (sender demo@localhost; ports 2587 STARTTLS, 2465 implicit TLS)

 Try a submission in another terminal:
   swaks --server 127.0.0.1:2587 --tls --auth PLAIN \\
         --auth-user demo --auth-password '$pw' \\
         --from demo@localhost --to someone@example.org
   (implicit TLS: --server 127.0.0.1:2465 --tls-on-connect)
 The log shows event=queued, then the first delivery attempt: a real
 domain's MX is tried on port 2525 (normally closed, so the message stays
 in $dir/spool/queue/ and is retried; see
 ./msa -c $dir/msa.yaml queue list); a domain that does not resolve is
 bounced at once to demo@localhost (see the log).
========================================================================

EOF
