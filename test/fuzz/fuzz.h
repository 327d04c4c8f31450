/*
 * fuzz.h - what every libFuzzer target of msa shares.
 *
 * A target checks the invariants of the code under test with FUZZ_CHECK:
 * a broken invariant prints what was expected and aborts, which libFuzzer
 * reports as a crash with the input that caused it.  Logging goes quiet
 * (errors only) so that millions of rejections do not flood the output.
 */
#ifndef MSA_FUZZ_H
#define MSA_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                           \
	do {                                                            \
		if (!(cond)) {                                          \
			fprintf(stderr, "%s:%d: invariant broken: %s: ",  \
			    __FILE__, __LINE__, #cond);                 \
			fprintf(stderr, __VA_ARGS__);                   \
			fputc('\n', stderr);                            \
			abort();                                        \
		}                                                       \
	} while (0)

/*
 * An invariant that a known, reported bug still breaks: checked only in a
 * -DFUZZ_STRICT build (make fuzz-smoke FUZZ_STRICT=1), so that the smoke
 * run stays useful for new findings until the owner fixes it.  Turn it
 * into FUZZ_CHECK once fixed.
 */
#ifdef FUZZ_STRICT
#define FUZZ_KNOWN(cond, ...) FUZZ_CHECK(cond, __VA_ARGS__)
#else
#define FUZZ_KNOWN(cond, ...) ((void)(cond))
#endif

/* Errors only: fatalx() still prints why the process would have died. */
static inline void
fuzz_quiet(void)
{
	log_init(LOG_LVL_ERROR, false, "fuzz");
}

/* LLVMFuzzerInitialize of a target whose only set-up is quiet logging. */
#define FUZZ_INIT_QUIET                                                 \
	int LLVMFuzzerInitialize(int *argc, char ***argv)               \
	{                                                               \
		(void)argc;                                             \
		(void)argv;                                             \
		fuzz_quiet();                                           \
		return 0;                                               \
	}

/*
 * A heap copy of the input with exactly len bytes plus a NUL, so that
 * ASan sees any read past the end of what a parser was given.
 */
static inline char *
fuzz_cstr(const uint8_t *data, size_t len)
{
	char *s = malloc(len + 1);

	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

/* A heap copy with no terminator at all, for (pointer, length) APIs. */
static inline char *
fuzz_bytes(const uint8_t *data, size_t len)
{
	char *s = malloc(len > 0 ? len : 1);

	if (s == NULL)
		abort();
	if (len > 0)
		memcpy(s, data, len);
	return s;
}

/* Is the NUL-terminated s shorter than size (it fits its array)? */
static inline bool
fuzz_fits(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

#endif /* MSA_FUZZ_H */
