/*
 * rime.h: Rime host ABI v1 for C faaslets (docs/abi.md is the contract;
 * the numbers below are those of abi/src/lib.rs, checked against it by
 * faas/tests/wasip1_guests.rs).
 *
 * A faaslet is a wasm module that exports `int32_t rime_invoke(void)` and
 * its memory, and imports the functions below from module "rime" (and, if
 * built for wasm32-wasip1, WASI preview 1: printf goes to the function's
 * log). Build one with clang and wasi-libc:
 *
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 \
 *         -Wl,--export=rime_invoke -o fn.wasm fn.c
 *
 * An invocation is one serializable transaction: writes are buffered and
 * commit only if rime_invoke returns RIME_RESULT_OK; any other result
 * commits nothing and the output is the caller's error message. The host
 * may run rime_invoke again on a conflict, so it must compute the same
 * thing from the same input and state (WASI clocks and random_get give the
 * same values in every run of one invocation).
 *
 * Pointers are offsets into the module's memory; lengths are unsigned.
 * A range outside memory traps the invocation. Every error return (a
 * negative code) has no effect.
 */
#ifndef RIME_H
#define RIME_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RIME_IMPORT(name) __attribute__((import_module("rime"), import_name(#name)))

/* ---- Results of rime_invoke ---------------------------------------- */

/* Commit the writes; the output is the result. */
#define RIME_RESULT_OK 0
/* Commit nothing; the output is a UTF-8 error message. */
#define RIME_RESULT_ERROR 1

/* ---- Limits (bytes) ------------------------------------------------- */

#define RIME_MAX_KEY_LEN 512u
#define RIME_MAX_VALUE_LEN ((16u << 20) - 8u)
#define RIME_MAX_INPUT_LEN (1u << 20)
#define RIME_MAX_OUTPUT_LEN (1u << 20)
#define RIME_MAX_NAMESPACE_LEN 64u
#define RIME_MAX_OPEN_NAMESPACES 16
#define RIME_MAX_WRITE_SET_BYTES ((32u << 20) - 4u)
#define RIME_WRITE_SET_ENTRY_OVERHEAD 12u
#define RIME_MAX_WRITTEN_BYTES (256u << 20)
#define RIME_MAX_LOG_LEN (4u << 10)
#define RIME_MAX_LOG_BYTES_PER_INVOCATION (64u << 10)
#define RIME_MAX_LOG_LINES_PER_INVOCATION 256u

/* ---- Other constants ------------------------------------------------ */

/* A length meaning "absent" (cas's expected/new value, scan's upper bound). */
#define RIME_NONE 0xFFFFFFFFu
/* The function's own namespace: always open as handle 0. */
#define RIME_OWN_NAMESPACE 0
/* cas results. */
#define RIME_CAS_OK 0
#define RIME_CAS_MISMATCH 1
/* scan flags: lower bound exclusive (to resume after a key), upper bound inclusive. */
#define RIME_SCAN_LO_EXCLUSIVE 1u
#define RIME_SCAN_HI_INCLUSIVE 2u
/* key_len of the record that ends a scan; sizes of the records' headers. */
#define RIME_SCAN_END 0xFFFFFFFFu
#define RIME_SCAN_ENTRY_HEADER 8u
#define RIME_SCAN_END_LEN 4u

/* Log levels (others are clamped into this range). */
#define RIME_LOG_ERROR 0
#define RIME_LOG_WARN 1
#define RIME_LOG_INFO 2
#define RIME_LOG_DEBUG 3
#define RIME_LOG_TRACE 4

/* ---- Error codes (negative results) --------------------------------- */

#define RIME_ERR_NOT_FOUND (-1)       /* key absent (get only) */
#define RIME_ERR_BAD_HANDLE (-2)      /* namespace handle not open in this invocation */
#define RIME_ERR_DENIED (-3)          /* namespace not granted (or unknown), or read-only */
#define RIME_ERR_KEY_TOO_LARGE (-4)   /* key or bound longer than RIME_MAX_KEY_LEN */
#define RIME_ERR_VALUE_TOO_LARGE (-5) /* value longer than RIME_MAX_VALUE_LEN */
#define RIME_ERR_OUTPUT_TOO_LARGE (-6) /* output longer than RIME_MAX_OUTPUT_LEN */
#define RIME_ERR_NOT_I64 (-7)         /* add on a value whose length is not 8 */
#define RIME_ERR_OVERFLOW (-8)        /* add would overflow int64_t */
#define RIME_ERR_INVALID (-9)         /* unknown flag bits, bad namespace name, bad RIME_NONE */
#define RIME_ERR_LIMIT (-10)          /* RIME_MAX_OPEN_NAMESPACES reached */
#define RIME_ERR_WRITE_SET_FULL (-11) /* write-set or written-bytes limit reached */

/* ---- Imports (module "rime") ---------------------------------------- */

/* Returns the input's length n; copies it to buf only if n <= cap
 * (rime_input(0, 0) asks for the length). */
RIME_IMPORT(input) int32_t rime_input(uint8_t *buf, uint32_t cap);

/* Replaces the output with len bytes at ptr (the last call wins).
 * 0, or RIME_ERR_OUTPUT_TOO_LARGE (output unchanged). */
RIME_IMPORT(output) int32_t rime_output(const uint8_t *ptr, uint32_t len);

/* Opens a granted namespace: a handle >= 0 (the same name twice gives the
 * same handle; the function's own name gives 0), or RIME_ERR_INVALID,
 * RIME_ERR_DENIED, RIME_ERR_LIMIT. */
RIME_IMPORT(ns_open) int32_t rime_ns_open(const char *name, uint32_t name_len);

/* Returns the value's length n >= 0 and copies it to buf only if n <= cap;
 * or RIME_ERR_NOT_FOUND, RIME_ERR_BAD_HANDLE, RIME_ERR_KEY_TOO_LARGE. */
RIME_IMPORT(get) int32_t rime_get(int32_t ns, const uint8_t *key, uint32_t key_len,
                                  uint8_t *buf, uint32_t cap);

/* Stores a value: 0, or RIME_ERR_BAD_HANDLE, RIME_ERR_DENIED,
 * RIME_ERR_KEY_TOO_LARGE, RIME_ERR_VALUE_TOO_LARGE, RIME_ERR_WRITE_SET_FULL. */
RIME_IMPORT(put) int32_t rime_put(int32_t ns, const uint8_t *key, uint32_t key_len,
                                  const uint8_t *val, uint32_t val_len);

/* Removes a key if present: 0 either way, or the rime_put errors. */
RIME_IMPORT(delete) int32_t rime_delete(int32_t ns, const uint8_t *key, uint32_t key_len);

/* Adds delta to the little-endian int64 counter at key (absent = 0) and
 * writes the new value (8 bytes, little-endian) to out. 0, or
 * RIME_ERR_NOT_I64, RIME_ERR_OVERFLOW, or the rime_put errors. */
RIME_IMPORT(add) int32_t rime_add(int32_t ns, const uint8_t *key, uint32_t key_len,
                                  int64_t delta, int64_t *out);

/* If the value equals exp (exp_len RIME_NONE: "absent"), replaces it with
 * new (new_len RIME_NONE: delete). RIME_CAS_OK, RIME_CAS_MISMATCH, or the
 * rime_put errors. */
RIME_IMPORT(cas) int32_t rime_cas(int32_t ns, const uint8_t *key, uint32_t key_len,
                                  const uint8_t *exp, uint32_t exp_len,
                                  const uint8_t *new_val, uint32_t new_len);

/* Fills buf with records of the keys in [lo, hi) (see the RIME_SCAN_ flags;
 * hi_len RIME_NONE: no upper bound), merged with this invocation's writes.
 * Each record: key_len u32, val_len u32, key, value (little-endian, no
 * padding); a record with key_len RIME_SCAN_END ends the range. Returns
 * r: 0 < r <= cap bytes of whole records were written; r > cap: nothing
 * was written, the next record needs r bytes; r < 0: RIME_ERR_BAD_HANDLE,
 * RIME_ERR_KEY_TOO_LARGE, RIME_ERR_INVALID. Resume after the last key with
 * RIME_SCAN_LO_EXCLUSIVE. */
RIME_IMPORT(scan) int32_t rime_scan(int32_t ns, const uint8_t *lo, uint32_t lo_len,
                                    const uint8_t *hi, uint32_t hi_len, uint32_t flags,
                                    uint8_t *buf, uint32_t cap);

/* Logs a message at level (RIME_LOG_*); truncated past RIME_MAX_LOG_LEN,
 * dropped past the invocation's budget. */
RIME_IMPORT(log) void rime_log(int32_t level, const char *msg, uint32_t msg_len);

/* Reads the function's configuration entry key (set at deploy: --env,
 * --secret), as rime_get reads a value: its length n >= 0, copied to buf
 * only if n <= cap; or RIME_ERR_NOT_FOUND, RIME_ERR_INVALID (a key not
 * [A-Za-z_][A-Za-z0-9_]* of at most 128 bytes). A WASI module also sees
 * the entries as its environment (getenv). */
RIME_IMPORT(config_get) int32_t rime_config_get(const char *key, uint32_t key_len,
                                                uint8_t *buf, uint32_t cap);

#undef RIME_IMPORT

#ifdef __cplusplus
}
#endif

#endif /* RIME_H */
