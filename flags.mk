# flags.mk - the compiler flags msa and bench/loadgen share (included by
# both Makefiles): warnings as errors, hardening, PIE with full RELRO.

WARN	= -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
	  -Wmissing-prototypes -Wformat=2 -Wno-unused-parameter
HARDEN	= -fstack-protector-strong -fstack-clash-protection -fcf-protection \
	  -D_FORTIFY_SOURCE=2 -fPIE
OPT	?= -O2 -g
CFLAGS	?=
CFLAGS	+= -std=c17 -D_GNU_SOURCE $(OPT) $(WARN) $(HARDEN) $(EXTRA_CFLAGS)
LDFLAGS	+= -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack $(EXTRA_LDFLAGS)
