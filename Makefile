# msa - hardened mail submission agent
#
#   make         build ./msa
#   make run     install what is missing, build, start a development msa
#   make check   install what is missing, build, run the whole TAP suite
#   make install PREFIX=/usr/local DESTDIR=

CC	?= cc
PREFIX	?= /usr/local
SBINDIR	?= $(PREFIX)/sbin
MANDIR	?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc

BUILD	?= build
BIN	?= msa

SRCS	= msa.c proc.c listener.c smtp.c tls.c auth.c policy.c addr.c \
	  queue.c bounce.c relay.c dns.c config.c sandbox.c control.c ipc.c \
	  log.c util.c
LIBSRCS	= $(filter-out msa.c,$(SRCS))
OBJS	= $(SRCS:%.c=$(BUILD)/%.o)
LIBOBJS	= $(LIBSRCS:%.c=$(BUILD)/%.o)

include flags.mk
LIBS	= -lssl -lcrypto -lcrypt -lyaml -lseccomp -lcares

UNIT_SRCS = $(wildcard test/unit_*.c)
UNIT_BINS = $(UNIT_SRCS:test/%.c=$(BUILD)/test/%)

# The sanitizer build lives beside the normal one and runs the same suite
# (-O1 inlining makes gcc 12 see NULL format arguments in test tables
# that are never NULL: -Wno-format-overflow there only).  Its seccomp lists
# are wider for the sanitizer runtime (MSA_SANITIZER), so the sandbox unit
# test runs only against the release build.
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all \
	    -fno-omit-frame-pointer
# Daemon processes run under seccomp, where LeakSanitizer cannot stop the
# world; leaks are checked in the unit tests (valgrind) instead.
SAN_ENV	= MSATEST_SANITIZER=1 ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Debian packages needed to build, to run the tests, and to run make run.
BUILD_PKGS = gcc make pkg-config libssl-dev libcrypt-dev libyaml-dev \
	     libseccomp-dev libc-ares-dev openssl
TEST_PKGS  = perl python3 python3-aiosmtpd python3-dnslib apache2-utils \
	     procps iproute2 binutils valgrind

.PHONY: all deps run check check-unit check-asan check-valgrind unit hooks \
	bench install clean format

all: $(BUILD)/.deps $(BIN)

$(BIN): $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/%.o: %.c msa.h | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $(BUILD)/test

$(BUILD)/test/%: test/%.c test/tap.h $(LIBOBJS) | $(BUILD)
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(LIBOBJS) $(LIBS)

# Install what is missing (root only), once per package set.
$(BUILD)/.deps: test/deps.sh | $(BUILD)
	@sh test/deps.sh $(BUILD_PKGS) -- $(TEST_PKGS)
	@touch $@

deps:
	@sh test/deps.sh $(BUILD_PKGS) -- $(TEST_PKGS)

unit: $(UNIT_BINS)

run: $(BUILD)/.deps msa
	@sh test/devsetup.sh $(BUILD)/dev
	./msa -c $(BUILD)/dev/msa.yaml

# The whole suite: unit and integration tests, then the same again against
# the ASan+UBSan build, then the unit tests under valgrind, then every
# libFuzzer target for a bounded time (test/fuzz/fuzz.mk; make fuzz runs
# them longer).
check: check-unit check-asan check-valgrind fuzz-smoke

check-unit: $(BUILD)/.deps $(BIN) $(UNIT_BINS) hooks
	MSA_HOOKS=$(CURDIR)/build/hooks/msa prove -f $(UNIT_BINS) test/*.t

# A test-only binary: release flags plus hooks that make a sandboxed process
# attempt a forbidden system call on SIGUSR2 (test/80-sigsys.t).  It is
# never installed; the release ./msa has no such code.
hooks: $(BUILD)/.deps
	$(MAKE) BUILD=build/hooks BIN=build/hooks/msa \
	    EXTRA_CFLAGS=-DMSA_TEST_HOOKS build/hooks/msa

check-asan: $(BUILD)/.deps
	$(MAKE) BUILD=build/asan BIN=build/asan/msa OPT="-O1 -g -Wno-format-overflow" \
	    EXTRA_CFLAGS="$(SAN_FLAGS) -DMSA_SANITIZER" \
	    EXTRA_LDFLAGS="$(SAN_FLAGS)" build/asan/msa unit
	$(SAN_ENV) MSA=$(CURDIR)/build/asan/msa prove -f \
	    $(filter-out %/unit_sandbox,$(UNIT_BINS:build/%=build/asan/%)) \
	    test/*.t

check-valgrind: $(BUILD)/.deps $(UNIT_BINS)
	@for t in $(UNIT_BINS); do \
	    echo "valgrind $$t"; \
	    valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect \
		--show-leak-kinds=definite,indirect $$t >/dev/null || exit 1; \
	done; echo "valgrind: 0 errors in $(words $(UNIT_BINS)) unit tests"

install: msa
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/msa
	install -m 0755 msa $(DESTDIR)$(SBINDIR)/msa
	install -m 0644 msa.yaml.example $(DESTDIR)$(SYSCONFDIR)/msa/msa.yaml.example

# The load generator for bench/compare (not part of make check).
bench:
	$(MAKE) -C bench

format:
	clang-format -i *.c *.h test/*.c bench/*.c

clean:
	rm -rf build/*.o build/test build/asan build/hooks build/fuzz msa

include test/fuzz/fuzz.mk
