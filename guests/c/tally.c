/*
 * tally: a C faaslet (wasm32-wasip1, wasi-libc) against host ABI v1.
 *
 * Input: words separated by spaces. Each word's counter in the function's
 * namespace goes up by one (rime_add); the output lists the new counts in
 * input order and the previous input, e.g. "a=1 b=1 a=2 (previous: -)".
 * printf's lines go to the function's log. Built by scripts/build-guests.
 */
#include <stdio.h>
#include <string.h>

#include "rime.h"

/* The largest input tally accepts. */
#define INPUT_CAP 4096

/* Key of the previous input. */
static const char LAST_KEY[] = "\x01last";

static char input[INPUT_CAP + 1];
static char previous[INPUT_CAP + 1];
static char out[4 * INPUT_CAP];

static int32_t fail(const char *msg) {
    rime_output((const uint8_t *)msg, (uint32_t)strlen(msg));
    return RIME_RESULT_ERROR;
}

__attribute__((export_name("rime_invoke")))
int32_t rime_invoke(void) {
    int32_t n = rime_input((uint8_t *)input, INPUT_CAP);
    if (n < 0 || n > INPUT_CAP) {
        return fail("input too long");
    }
    input[n] = '\0';
    int32_t prev = rime_get(RIME_OWN_NAMESPACE, (const uint8_t *)LAST_KEY,
                            sizeof LAST_KEY - 1, (uint8_t *)previous, INPUT_CAP);
    if (prev == RIME_ERR_NOT_FOUND) {
        strcpy(previous, "-");
    } else if (prev < 0 || prev > INPUT_CAP) {
        return fail("cannot read the previous input");
    } else {
        previous[prev] = '\0';
    }
    size_t used = 0;
    for (char *word = strtok(input, " "); word; word = strtok(NULL, " ")) {
        int64_t count = 0;
        int32_t r = rime_add(RIME_OWN_NAMESPACE, (const uint8_t *)word,
                             (uint32_t)strlen(word), 1, &count);
        if (r != 0) {
            return fail("cannot count a word");
        }
        printf("tally: %s is now %lld\n", word, (long long)count);
        used += (size_t)snprintf(out + used, sizeof out - used, "%s=%lld ", word,
                                 (long long)count);
        if (used >= sizeof out) {
            return fail("output too long");
        }
    }
    snprintf(out + used, sizeof out - used, "(previous: %s)", previous);
    rime_input((uint8_t *)input, INPUT_CAP); /* strtok cut it up */
    if (rime_put(RIME_OWN_NAMESPACE, (const uint8_t *)LAST_KEY, sizeof LAST_KEY - 1,
                 (const uint8_t *)input, (uint32_t)n) != 0) {
        return fail("cannot store the input");
    }
    fflush(stdout);
    rime_output((const uint8_t *)out, (uint32_t)strlen(out));
    return RIME_RESULT_OK;
}
