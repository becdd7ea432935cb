/*
 * nn_rng.c - the kit's only source of randomness: xoshiro256** seeded by
 * splitmix64 (so any 64-bit seed, 0 included, gives a good state).
 *
 * Invariants: the generator is a value (four words); there is no global
 * state and no cached spare normal, so copying an nn_rng forks the stream
 * exactly and a run is a pure function of its seeds.
 */
#include "nn.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void nn_rng_seed(nn_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t nn_rng_next(nn_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

float nn_rng_uniform(nn_rng *r)
{
    return (float)(nn_rng_next(r) >> 40) * 0x1.0p-24f;
}

double nn_rng_open01(nn_rng *r)
{
    return ((double)(nn_rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

float nn_rng_normal(nn_rng *r)
{
    double u1 = nn_rng_open01(r), u2 = nn_rng_open01(r);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t nn_rng_below(nn_rng *r, uint64_t n)
{
    /* Lemire's multiply-shift with rejection: no modulo bias. */
    unsigned __int128 m = (unsigned __int128)nn_rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t thresh = -n % n;
        while (lo < thresh) {
            m = (unsigned __int128)nn_rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}
