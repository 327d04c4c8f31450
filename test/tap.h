/*
 * tap.h - the smallest Test Anything Protocol producer for C unit tests.
 * Each test file includes it once; plan with done_testing().
 */
#ifndef TAP_H
#define TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

static int __attribute__((format(printf, 2, 3), unused))
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	tap_count++;
	printf("%sok %d - ", cond ? "" : "not ", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	fflush(stdout);
	return cond;
}

#define is_int(got, want, ...)                                             \
	do {                                                               \
		long long g_ = (long long)(got), w_ = (long long)(want);   \
		if (!ok(g_ == w_, __VA_ARGS__))                            \
			printf("#   got %lld, want %lld\n", g_, w_);   \
	} while (0)

#define is_str(got, want, ...)                                             \
	do {                                                               \
		const char *g_ = (got), *w_ = (want);                      \
		if (!ok(g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0,   \
			__VA_ARGS__))                                      \
			printf("#   got \"%s\"\n#  want \"%s\"\n",         \
			    g_ ? g_ : "(null)", w_ ? w_ : "(null)");       \
	} while (0)

static int __attribute__((unused))
done_testing(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
