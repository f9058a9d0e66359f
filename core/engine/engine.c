/*
 * engine.c - what every engine shares: client ids.
 */
#include <stdlib.h>
#include <sys/random.h>
#include "engine/engine.h"

void bx_engine_random_id(char out[32])
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned char rnd[64];
    size_t n = 0;

    while (n < 31) {
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            abort();            /* the kernel CSPRNG never fails for 64 bytes */
        for (size_t i = 0; i < sizeof(rnd) && n < 31; i++)
            if (rnd[i] < 252)   /* 252 = 7 * 36: keeps the draw uniform */
                out[n++] = alphabet[rnd[i] % 36];
    }
    out[31] = '\0';
}
