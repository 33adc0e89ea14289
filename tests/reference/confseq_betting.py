"""Test-only reference: confseq's betting confidence sequences, copied verbatim.

From https://github.com/gostevehoward/confseq (commit 70b1ef30aef08ad459815ea87fc25248f8b15178,
src/confseq/betting.py and src/confseq/betting_strategies.py), by Ian Waudby-Smith and
the confseq developers: the reference implementation of Waudby-Smith & Ramdas,
"Confidence sequences for sampling without replacement" (arXiv 2006.04347) and
"Estimating means of bounded random variables by betting" (arXiv 2010.09686).
confseq is on PyPI only as cp39/cp310 wheels (its sdist's pinned pybind11 does not
build on Python 3.11), so the pure-numpy functions the tests need are copied here.
Changes: cs_from_martingale's `parallel` branch (multiprocess) is removed; the
rest is as it was (ruff is silenced for this file: it is someone else's code).

MIT License

Copyright (c) 2021 confseq developers

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""
# ruff: noqa

import math

import numpy as np


def get_running_intersection(l, u):
    return np.maximum.accumulate(l), np.minimum.accumulate(u)


# src/confseq/betting.py
def betting_mart(
    x,
    m,
    alpha=0.05,
    lambdas_fn_positive=None,
    lambdas_fn_negative=None,
    N=None,
    convex_comb=False,
    theta=1 / 2,
    trunc_scale=1 / 2,
    m_trunc=True,
):
    """
    Betting martingale for a given sequence
    of data and a null mean value.

    Parameters
    ----------
    x, array-like
        The vector of observations.

    m, real
        Null value for the mean of x

    alpha, real
        Significance level between 0 and 1.

    lambdas_fn_postive, bivariate function or None
        Function of `x` and `m` which generates an array-like
        of bets with the same length as `x`.

    lambdas_fn_negative=None, bivariate function or None
        Same as above but for the negative capital process.
        This will be set to lambdas_fn_positive if
        left as None.

    N, positive integer or None
        Population size if sampling WoR

    convex_comb, boolean
        Should a convex combination of martingales be taken?
        If True, the process will be theta*pcp + (1-theta)*ncp,
        and if False, it will be max(theta*pcp, (1-theta)*ncp) where
        pcp and ncp are the positive and negative capital processes,
        respectively.

    theta, [0, 1]-valued real
        Positive/negative capital process weight as
        defined in `convex_comb`

    trunc_scale, (0, 1]-valued real
        The factor by which to multiply the truncation defined
        in `m_trunc`. Leaving this as 1 will perform no
        additional truncation.

    m_trunc, boolean
        Should truncation be used based on m? If True, then truncation
        will be given by trunc_scale * 1/m or trunc_scale * 1/(1-m)
        depending on the capital process. If False, then truncation
        will be given by trunc_scale.


    Returns
    -------
    mart, array-like
        The martingale that results from the observed x
    """

    assert 0 <= theta <= 1

    # if theta == 1:
    #     assert all(x >= 0)
    # elif theta == 0:
    #     assert all(x <= 1)
    # else:
    #     assert all(x >= 0) and all(x <= 1)

    if lambdas_fn_positive is None:
        lambdas_fn_positive = lambda x, m: lambda_predmix_eb(x, alpha=alpha * theta)

    if lambdas_fn_negative is None:
        lambdas_fn_negative = lambda x, m: lambda_predmix_eb(x, alpha=alpha * (1 - theta))

    if N is not None:
        t = np.arange(1, len(x) + 1)
        S_t = np.cumsum(x)
        S_tminus1 = np.append(0, S_t[0 : (len(x) - 1)])
        mu_t = (N * m - S_tminus1) / (N - (t - 1))
    else:
        mu_t = np.repeat(m, len(x))

    assert 0 < trunc_scale <= 1

    if theta > 0:
        lambdas_positive = lambdas_fn_positive(x, m)
        # if we want to truncate with m
        if m_trunc:
            with np.errstate(divide="ignore"):
                lambdas_positive = np.minimum(lambdas_positive, trunc_scale / mu_t)
                lambdas_positive = np.maximum(lambdas_positive, -trunc_scale / (1 - mu_t))
        else:
            lambdas_positive = np.minimum(lambdas_positive, trunc_scale)
            lambdas_positive = np.maximum(lambdas_positive, -trunc_scale)

        with np.errstate(invalid="ignore"):
            multiplicand_positive = 1 + lambdas_positive * (x - mu_t)

        # Use convention that inf * 0 = 0. We still have
        # a martingale under the null
        multiplicand_positive[np.logical_and(lambdas_positive == math.inf, x - mu_t == 0)] = 1

        with np.errstate(invalid="ignore"):
            capital_process_positive = np.cumprod(multiplicand_positive)

        # If we get nans from 0 * inf, this should be 0
        capital_process_positive[np.isnan(capital_process_positive)] = 0
    else:
        capital_process_positive = np.repeat(0, len(x))

    if theta < 1:
        lambdas_negative = lambdas_fn_negative(x, m)
        if m_trunc:
            with np.errstate(divide="ignore"):
                lambdas_negative = np.minimum(lambdas_negative, trunc_scale / (1 - mu_t))
                lambdas_negative = np.maximum(lambdas_negative, -trunc_scale / mu_t)
        else:
            lambdas_negative = np.minimum(lambdas_negative, trunc_scale)
            lambdas_negative = np.maximum(lambdas_negative, -trunc_scale)

        with np.errstate(invalid="ignore"):
            multiplicand_negative = 1 - lambdas_negative * (x - mu_t)

        multiplicand_negative[np.logical_and(lambdas_negative == math.inf, x - mu_t == 0)] = 1

        with np.errstate(invalid="ignore"):
            capital_process_negative = np.cumprod(multiplicand_negative)

        capital_process_negative[np.isnan(capital_process_negative)] = 0
    else:
        capital_process_negative = np.repeat(0, len(x))

    if theta == 1:
        capital_process = capital_process_positive
    elif theta == 0:
        capital_process = capital_process_negative
    else:
        if convex_comb:
            capital_process = (
                theta * capital_process_positive + (1 - theta) * capital_process_negative
            )
        else:
            capital_process = np.maximum(
                theta * capital_process_positive, (1 - theta) * capital_process_negative
            )

    # If mu_t < 0 or mu_t > 1, we cannot be under the null
    capital_process[np.logical_or(mu_t < 0, mu_t > 1)] = math.inf

    assert not any(np.isnan(capital_process))

    assert all(capital_process >= 0)

    return capital_process


# src/confseq/betting.py
def cs_from_martingale(
    x,
    mart_fn,
    breaks=1000,
    alpha=0.05,
    N=None,
    running_intersection=False,
    parallel=False,
    log_scale=False,
):
    """
    Given a test supermartingale, produce a confidence sequence for
    any parameter using the grid method, assuming the parameter is
    in [0, 1]

    Parameters
    ----------
    x, array-like
        The vector of observations between 0 and 1.

    mart_fn, bivariate function
        A function which takes data `x` and a candidate mean `m`
        and outputs a (super)martingale.

    breaks, positive integer
        Number of breaks in the grid for constructing the confidence sequence

    alpha, real
        Significance level between 0 and 1.

    N, positive integer or None
        Population size if sampling WoR

    running_intersection, boolean
        Should the running intersection be taken?

    parallel, boolean
        Should computation be parallelized?

    Returns
    -------
    l, array-like
        Lower confidence sequence for the parameter
    u, array-like
        Upper confidence sequence for the parameter
    """
    possible_m = np.arange(0, 1 + 1 / breaks, step=1 / breaks)
    confseq_mtx = np.zeros((len(possible_m), len(x)))

    if log_scale:
        threshold = np.log(1 / alpha)
    else:
        threshold = 1 / alpha

    for i in np.arange(0, len(possible_m)):
        m = possible_m[i]
        confseq_mtx[i, :] = mart_fn(x, m) <= threshold

    l = np.zeros(len(x))
    u = np.ones(len(x))

    for j in np.arange(0, len(x)):
        where_in_cs = np.where(confseq_mtx[:, j])
        if len(where_in_cs[0]) == 0:
            l[j] = 0
            u[j] = 1
        else:
            l[j] = possible_m[where_in_cs[0][0]]
            u[j] = possible_m[where_in_cs[0][-1]]
    l = np.maximum(0, l - 1 / breaks)
    u = np.minimum(1, u + 1 / breaks)

    if N is not None:
        logical_l, logical_u = logical_cs(x, N)

        l = np.maximum(l, logical_l)
        u = np.minimum(u, logical_u)

    return get_running_intersection(l, u) if running_intersection else (l, u)


# src/confseq/betting.py
def logical_cs(x, N):
    """
    The 1-dimensional logical confidence sequence for sampling without
    replacement. This is essentially the CS that would be
    known regardless of the underlying martingale being used.
    Specifically, if the cumulative sum at time t, S_t is equal to
    5 and N is 10, then the true mean cannot be any less than 0.5, assuming
    all observations are between 0 and 1.

    Parameters
    ----------
    x, array-like of reals between 0 and 1
        The observed bounded random variables.
    N, integer
        The size of the finite population

    Returns
    -------
    l, array-like
        Lower logical confidence sequence for the parameter
    u, array-like
        Upper logical confidence sequence for the parameter
    """
    t = np.arange(1, len(x) + 1)

    S_t = np.cumsum(x)

    l = S_t / N
    u = 1 - (t - S_t) / N

    return l, u


# src/confseq/betting_strategies.py
def lambda_predmix_eb(
    x,
    truncation=math.inf,
    alpha=0.05,
    fixed_n=None,
    prior_mean=1 / 2,
    prior_variance=1 / 4,
    fake_obs=1,
    scale=1,
):
    """
    Predictable mixture lambda values or "bets"

    Parameters
    ----------
    x, array-like of 0-1 bounded reals
        Observed data

    truncation, positive real or infinity
        Level at which to truncate lambda

    alpha, (0, 1)-valued real
        Significance level in (0, 1)

    fixed_n, positive integer or None
        Sample size for which lambda should be optimized.
        If left as None, lambda will scale like 1/sqrt{t log t}

    prior_mean, [0, 1]-valued real
        Prior mean to use for regularized sample mean

    prior_variance, (0, 1/4]-valued real
        Prior variance to use for regularized sample variance

    fake_obs, positive integer
        Number of 'fake observations' to add.
        Larger values correspond to more regularization near
        `prior_mean` and `prior_variance`

    scale, positive real
        Scale by which to multiply final lambda output.
        For most applications, this should be left as 1

    Returns
    -------
    lambdas, array-like of positive reals
        A (numpy) array of lambda values or "bets"
    """
    t = np.arange(1, len(x) + 1)
    mu_hat_t = np.minimum((fake_obs * prior_mean + np.cumsum(x)) / (t + fake_obs), 1)
    mu_hat_tminus1 = np.append(prior_mean, mu_hat_t[0 : (len(x) - 1)])
    sigma2_t = (fake_obs * prior_variance + np.cumsum(np.power(x - mu_hat_t, 2))) / (t + fake_obs)
    sigma2_tminus1 = np.append(prior_variance, sigma2_t[0 : (len(x) - 1)])
    if fixed_n is None:
        lambdas = np.sqrt(2 * np.log(1 / alpha) / (t * np.log(1 + t) * sigma2_tminus1))
    else:
        lambdas = np.sqrt(2 * np.log(1 / alpha) / (fixed_n * sigma2_tminus1))

    lambdas[np.isnan(lambdas)] = 0

    lambdas = np.minimum(truncation, lambdas)

    return lambdas * scale


# src/confseq/betting_strategies.py
def lambda_aKelly(
    x,
    m,
    prior_mean=1 / 2,
    prior_variance=1 / 4,
    fake_obs=1,
    N=None,
    trunc_scale=1,
):
    assert trunc_scale > 0 and trunc_scale <= 1
    t = np.arange(1, len(x) + 1)
    S_t = np.cumsum(x)
    x_tminus1 = np.append(0, x[0 : (len(x) - 1)])
    S_tminus1 = np.cumsum(x_tminus1)
    mu_hat_t = (fake_obs * prior_mean + np.cumsum(x)) / (t + fake_obs)
    mu_hat_tminus1 = np.append(prior_mean, mu_hat_t[0 : (len(x) - 1)])
    V_t = (fake_obs * prior_variance + np.cumsum(np.power(x - mu_hat_t, 2))) / (t + fake_obs)
    V_tminus1 = np.append(prior_variance, V_t[0 : (len(x) - 1)])

    if N is not None:
        conditional_mu_hat_tminus1 = (N * mu_hat_tminus1 - S_tminus1) / (N - t + 1)
        mu_t = (N * m - S_tminus1) / (N - (t - 1))
    else:
        conditional_mu_hat_tminus1 = mu_hat_tminus1
        mu_t = m

    lambdas = (conditional_mu_hat_tminus1 - mu_t) / (
        V_tminus1 + np.power(conditional_mu_hat_tminus1 - mu_t, 2)
    )

    lambdas = np.maximum(-trunc_scale / (1 - mu_t), lambdas)
    lambdas = np.minimum(trunc_scale / mu_t, lambdas)

    return lambdas
