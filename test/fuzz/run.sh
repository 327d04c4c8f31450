#!/bin/sh
# Run msa's libFuzzer targets for a bounded time each and report.
#
#   test/fuzz/run.sh SECONDS TARGET...     (from the top of the tree)
#
# Each target runs on build/fuzz/corpus/TARGET, a copy of its seeds in
# test/fuzz/corpus/TARGET (inputs found by earlier runs stay and are used
# again), with its dictionary, -timeout=10 and a -max_len suited to what
# it parses.  FUZZ_JOBS targets run at once (default 2).  A crash, leak,
# sanitizer report, broken invariant or timeout fails the run; the log
# is printed and the input kept in build/fuzz/artifacts/TARGET/.
# Prints the executions of each target (libFuzzer's final stats).
set -u

if [ $# -lt 2 ]; then
	echo "usage: $0 SECONDS TARGET..." >&2
	exit 2
fi
dir=${FUZZ_DIR:-build/fuzz}
src=test/fuzz

# One target, in the background of xargs: writes logs/TARGET.result.
if [ "$1" = "--one" ]; then
	secs=$2
	t=$3
	case $t in
	smtp_cmd) max_len=1024 ;;
	smtp_data) max_len=32768 ;;
	policy) max_len=8192 ;;
	addr) max_len=1024 ;;
	config) max_len=4096 ;;
	relay_reply) max_len=8192 ;;
	dns) max_len=1024 ;;
	queue_env) max_len=4096 ;;
	*) max_len=4096 ;;
	esac
	corpus=$dir/corpus/$t
	art=$dir/artifacts/$t
	log=$dir/logs/$t.log
	mkdir -p "$corpus" "$dir/logs"
	rm -rf "$art"
	mkdir -p "$art"
	cp -p "$src/corpus/$t"/* "$corpus"/ 2>/dev/null
	set -- -max_total_time="$secs" -timeout=10 -max_len="$max_len" \
	    -print_final_stats=1 -artifact_prefix="$art/"
	[ -f "$src/$t.dict" ] && set -- "$@" -dict="$src/$t.dict"
	start=$(date +%s)
	# The hard limit catches a target that ignores -max_total_time.
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
	    timeout -k 10 $((secs * 2 + 120)) "$dir/fuzz_$t" "$@" "$corpus" \
	    >"$log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" |
	    tail -n 1)
	echo "$t $rc ${execs:-?} $took" >"$dir/logs/$t.result"
	exit 0
fi

secs=$1
shift
for t in "$@"; do
	if [ ! -x "$dir/fuzz_$t" ]; then
		echo "fuzz: $dir/fuzz_$t is missing (make fuzz-build)" >&2
		exit 2
	fi
	rm -f "$dir/logs/$t.result"
done
echo "fuzz: $# targets, ${secs}s each, ${FUZZ_JOBS:-2} at a time"
printf '%s\n' "$@" |
    xargs -P "${FUZZ_JOBS:-2}" -I{} sh "$0" --one "$secs" {}

failed=0
printf '%-14s %-8s %14s %8s\n' target result executions seconds
for t in "$@"; do
	if [ -f "$dir/logs/$t.result" ]; then
		read -r name rc execs took <"$dir/logs/$t.result"
	else
		rc=x execs=? took=?
	fi
	if [ "$rc" = 0 ]; then
		res=ok
	else
		res=FAILED
		failed=1
	fi
	printf '%-14s %-8s %14s %8s\n' "$t" "$res" "$execs" "$took"
done
if [ $failed = 1 ]; then
	for t in "$@"; do
		read -r name rc execs took <"$dir/logs/$t.result" 2>/dev/null ||
		    rc=x
		[ "$rc" = 0 ] && continue
		echo
		echo "=== $t failed (exit $rc): $dir/logs/$t.log"
		grep -v -e '^#[0-9]' -e '^INFO:' -e '^	NEW_FUNC' \
		    -e '^"' -e '^###' "$dir/logs/$t.log" | tail -n 60
		for a in "$dir/artifacts/$t"/*; do
			[ -f "$a" ] || continue
			echo "input: $a"
			echo "reproduce: $dir/fuzz_$t $a"
		done
	done
	exit 1
fi
exit 0
