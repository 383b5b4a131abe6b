/* Consistent Overhead Byte Stuffing (no 0x00 in the output; the 0x00 delimiter is not included). */
#ifndef FW_COBS_H
#define FW_COBS_H
#include <stddef.h>
#include <stdint.h>

/* Largest encoding of `len` bytes. */
#define COBS_MAX_ENCODED(len) ((len) + (len) / 254 + 1)

/* Encodes src[0..len) into dst (capacity cap); returns the encoded length, or 0 if it does not fit. */
size_t cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

/* Decodes src[0..len) (without the delimiter) into dst (capacity cap); returns the decoded length, or
 * -1 for malformed input (a 0x00 byte, a code running past the end) or output that does not fit. */
int cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap);

#endif
