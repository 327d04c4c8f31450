# test/fuzz/fuzz.mk - libFuzzer targets for msa's parsers (included by the
# top Makefile).
#
#   make fuzz-build              build every target into build/fuzz/
#   make fuzz-smoke              each target FUZZ_SECONDS (60) on a copy of
#                                its seed corpus; fails on any finding
#   make fuzz                    the same for FUZZ_LONG_SECONDS (600)
#   make fuzz-smoke FUZZ_TARGETS="policy addr" FUZZ_SECONDS=30 FUZZ_JOBS=1
#
# The project's sources are compiled again with clang and
# -fsanitize=fuzzer-no-link,address,undefined into build/fuzz/obj/; the
# objects of the normal build are never touched.  Every name defined here
# starts with FUZZ_ (or fuzz- for targets).

FUZZ_CC		?= clang-14
FUZZ_DIR	= build/fuzz
FUZZ_SRCDIR	= test/fuzz
FUZZ_SECONDS	?= 60
FUZZ_LONG_SECONDS ?= 600
FUZZ_JOBS	?= 2
FUZZ_TARGETS	?= smtp_cmd smtp_data policy addr config relay_reply dns \
		   queue_env
# Debian packages: the compiler, its sanitizer runtimes and libFuzzer.
FUZZ_PKGS	= clang-14 libclang-rt-14-dev libfuzzer-14-dev \
		  $(if $(BUILD_PKGS),$(BUILD_PKGS),make libssl-dev libcrypt-dev \
		  libyaml-dev libseccomp-dev libc-ares-dev)

FUZZ_LIBSRCS	= $(if $(LIBSRCS),$(LIBSRCS),$(filter-out msa.c,$(wildcard *.c)))
FUZZ_OBJS	= $(FUZZ_LIBSRCS:%.c=$(FUZZ_DIR)/obj/%.o)
FUZZ_BINS	= $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
FUZZ_LIBS	= $(if $(LIBS),$(LIBS),-lssl -lcrypto -lcrypt -lyaml -lseccomp -lcares)

# FUZZ_STRICT=1 also checks the invariants of known, reported bugs.
FUZZ_STRICT	?= 0
FUZZ_SAN	= -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_BASE	= -std=c17 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer \
		  $(FUZZ_SAN)
# Other people's files: their warnings are not ours to fail on.
FUZZ_OBJ_CFLAGS	= $(FUZZ_BASE) -fsanitize=fuzzer-no-link -w
FUZZ_TGT_CFLAGS	= $(FUZZ_BASE) -fsanitize=fuzzer -I. \
		  $(if $(filter 1,$(FUZZ_STRICT)),-DFUZZ_STRICT) -Wall -Wextra -Werror \
		  -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
		  -Wno-unused-parameter

.PHONY: fuzz-deps fuzz-build fuzz-smoke fuzz fuzz-clean fuzz-force
# Built through a pattern rule, but not intermediate: keep them.
.SECONDARY: $(FUZZ_OBJS)

# Install clang and libFuzzer when missing (root), as make check does.
$(FUZZ_DIR)/.deps:
	@mkdir -p $(FUZZ_DIR)
	@sh test/deps.sh $(FUZZ_PKGS)
	@touch $@

fuzz-deps: $(FUZZ_DIR)/.deps

$(FUZZ_DIR)/obj/%.o: %.c msa.h | $(FUZZ_DIR)/.deps
	@mkdir -p $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -c -o $@ $<

# The targets' flags (FUZZ_STRICT) as a file: a change rebuilds them.
$(FUZZ_DIR)/.flags: fuzz-force | $(FUZZ_DIR)/.deps
	@echo '$(FUZZ_TGT_CFLAGS)' | cmp -s - $@ || \
	    echo '$(FUZZ_TGT_CFLAGS)' >$@

$(FUZZ_DIR)/fuzz_%: $(FUZZ_SRCDIR)/fuzz_%.c $(FUZZ_SRCDIR)/fuzz.h \
    $(FUZZ_OBJS) $(FUZZ_DIR)/.flags
	$(FUZZ_CC) $(FUZZ_TGT_CFLAGS) -o $@ $< $(FUZZ_OBJS) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_BINS)

fuzz-smoke: fuzz-build
	@FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_DIR=$(FUZZ_DIR) \
	    sh $(FUZZ_SRCDIR)/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz: fuzz-build
	@FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_DIR=$(FUZZ_DIR) \
	    sh $(FUZZ_SRCDIR)/run.sh $(FUZZ_LONG_SECONDS) $(FUZZ_TARGETS)

fuzz-clean:
	rm -rf $(FUZZ_DIR)
