/* Operands of a float product for the kernel tests (see prodfix.h). */
#include "tests/support/prodfix.h"

#include "tests/support/testutil.h"

#include <stdlib.h>
#include <string.h>

prod prod_make_ld(int ta, int tb, int M, int N, int K, uint64_t seed, int pad)
{
    prod p = {.ta = ta, .tb = tb, .M = M, .N = N, .K = K};
    p.lda = (ta ? M : K) + (pad ? 3 : 0);
    p.ldb = (tb ? K : N) + (pad ? 1 : 0);
    p.ldc = N + (pad ? 2 : 0);
    const size_t na = (size_t)(ta ? K : M) * p.lda, nb = (size_t)(tb ? N : K) * p.ldb,
                 nc = (size_t)M * p.ldc;
    p.A = malloc(sizeof(float) * (na ? na : 1));
    p.B = malloc(sizeof(float) * (nb ? nb : 1));
    p.C = malloc(sizeof(float) * (nc ? nc : 1));
    assert_non_null(p.A);
    assert_non_null(p.B);
    assert_non_null(p.C);
    tu_fill_uniform(p.A, na, -1, 1, seed);
    tu_fill_uniform(p.B, nb, -1, 1, seed + 1);
    tu_fill_uniform(p.C, nc, -1, 1, seed + 2);
    return p;
}

prod prod_make(int ta, int tb, int M, int N, int K, uint64_t seed)
{
    return prod_make_ld(ta, tb, M, N, K, seed, 1);
}

void prod_free(prod *p)
{
    free(p->A);
    free(p->B);
    free(p->C);
}

float *prod_copy_c(const prod *p)
{
    const size_t n = (size_t)p->M * p->ldc;
    float *c = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(c);
    memcpy(c, p->C, sizeof(float) * n);
    return c;
}
