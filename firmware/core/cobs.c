#include "cobs.h"

size_t cobs_encode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    if (cap < 1)
        return 0;
    size_t code_pos = 0, out = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == 0) {
            dst[code_pos] = code;
            code_pos = out++;
            code = 1;
            if (code_pos >= cap)
                return 0;
        } else {
            if (out >= cap)
                return 0;
            dst[out++] = src[i];
            code++;
            if (code == 0xFF) {
                dst[code_pos] = code;
                code_pos = out++;
                code = 1;
                /* a final 0xFF block needs no trailing code byte when the input ends here */
                if (i + 1 == len) {
                    out--;
                    return out;
                }
                if (code_pos >= cap)
                    return 0;
            }
        }
    }
    dst[code_pos] = code;
    return out;
}

int cobs_decode(const uint8_t *src, size_t len, uint8_t *dst, size_t cap)
{
    size_t in = 0, out = 0;
    while (in < len) {
        uint8_t code = src[in++];
        if (code == 0)
            return -1;
        for (uint8_t k = 1; k < code; k++) {
            if (in >= len || src[in] == 0 || out >= cap)
                return -1;
            dst[out++] = src[in++];
        }
        if (code != 0xFF && in < len) {
            if (out >= cap)
                return -1;
            dst[out++] = 0;
        }
    }
    return (int)out;
}
