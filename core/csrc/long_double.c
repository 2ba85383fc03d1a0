/* INCRBYFLOAT's arithmetic, as Redis 7.0 does it (t_string.c incrbyfloatCommand, util.c
 * string2ld and ld2string): parsing with strtold, adding in C's long double (80-bit x87 extended
 * precision on x86-64) and printing with "%.17Lf", trailing zeros removed. Written in C because
 * Rust has no long double; pure computation, no state, the C locale (nothing calls setlocale). */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LONG_DOUBLE_CHARS (5 * 1024)

/* Redis's string2ld: 1 if `s` is a float Redis accepts, its value in *dp. */
static int string_to_long_double(const char *s, size_t slen, long double *dp) {
    char buf[MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;

    if (slen == 0 || slen >= sizeof(buf)) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';

    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' || (size_t)(eptr - buf) != slen ||
        (errno == ERANGE && (value == HUGE_VALL || value == -HUGE_VALL || fpclassify(value) == FP_ZERO)) ||
        errno == EINVAL || isnan(value))
        return 0;

    *dp = value;
    return 1;
}

/* Redis's ld2string in LD_STR_HUMAN mode (the value is finite here); 0 if it does not fit. */
static size_t long_double_to_string(char *buf, size_t len, long double value) {
    int written = snprintf(buf, len, "%.17Lf", value);
    if (written < 0) return 0;
    size_t l = (size_t)written;
    if (l + 1 > len) return 0;
    if (strchr(buf, '.') != NULL) {
        char *p = buf + l - 1;
        while (*p == '0') {
            p--;
            l--;
        }
        if (*p == '.') l--;
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    buf[l] = '\0';
    return l;
}

/* current (absent when has_current is 0) plus increment, into out (at least
 * MAX_LONG_DOUBLE_CHARS bytes). Returns 0 and the length in *out_len, or 1: the current value is
 * not a float, 2: the increment is not, 3: the sum is NaN or infinite. */
int quill_incr_by_float(const char *current, size_t current_len, int has_current, const char *increment,
                        size_t increment_len, char *out, size_t out_cap, size_t *out_len) {
    long double value = 0, incr;
    if (has_current && !string_to_long_double(current, current_len, &value)) return 1;
    if (!string_to_long_double(increment, increment_len, &incr)) return 2;
    value += incr;
    if (isnan(value) || isinf(value)) return 3;
    *out_len = long_double_to_string(out, out_cap, value);
    return 0;
}
