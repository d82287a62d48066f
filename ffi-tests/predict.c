/* The phase trainer through the C ABI only: the seed's fixed schedule written
 * out in C, prediction of gradient sequences against a C weighted-least-squares
 * reference, the guarded schedule (a smooth sequence enters prediction, noise
 * never does, a non-finite loss backs off, reasons and per-parameter
 * measurements), statistics, and every bad input and call-order mistake. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

/* Phase of step `t` under the documented rules with no back-off. */
static uint32_t ref_phase(const tritter_phase_config_t *c, size_t t) {
    if (t < c->warmup_steps) return TRITTER_PHASE_WARMUP;
    size_t cycle = c->full_steps + c->predict_steps, k = (t - c->warmup_steps) % cycle;
    if (k < c->full_steps) return TRITTER_PHASE_FULL;
    k = k - c->full_steps + 1;
    return (c->correct_every && k % c->correct_every == 0) ? TRITTER_PHASE_CORRECT : TRITTER_PHASE_PREDICT;
}

/* WLS fit of g(s) = b + v s over (s_i, g_i) with weights w_i, by the normal equations. */
static double ref_wls(const double *s, const double *g, const double *w, size_t n, double at) {
    double s0 = 0, s1 = 0, s2 = 0, y0 = 0, y1 = 0;
    for (size_t i = 0; i < n; i++) {
        s0 += w[i]; s1 += w[i] * s[i]; s2 += w[i] * s[i] * s[i];
        y0 += w[i] * g[i]; y1 += w[i] * s[i] * g[i];
    }
    double det = s0 * s2 - s1 * s1;
    if (n < 2) return y0 / s0;
    return (s2 * y0 - s1 * y1) / det + (s0 * y1 - s1 * y0) / det * at;
}

static float grad_of(size_t t, size_t e) { /* noisy per-element sequence */
    return (float)sin(0.3 * (double)t + (double)e) + 0.01f * (float)t;
}

static void test_schedule_and_fit(void) {
    tritter_phase_config_t cfg;
    CHECK_OK(tritter_phase_config_seed(&cfg));
    CHECK(cfg.schedule == TRITTER_SCHEDULE_FIXED && cfg.predictors == 1u << TRITTER_PREDICTOR_WLS);
    CHECK(cfg.warmup_steps == 10 && cfg.full_steps == 5 && cfg.predict_steps == 20 && cfg.correct_every == 5);
    CHECK(cfg.adaptive_phases && cfg.history_window == 8 && cfg.prediction_horizon == 1);
    CHECK(cfg.history_decay == 0.95f && cfg.loss_increase_threshold == 0.1f);
    cfg.prediction_horizon = 3;
    tritter_phase_trainer_t *tr = NULL;
    CHECK_OK(tritter_phase_trainer_new(&cfg, &tr));
    size_t shape_w[2] = {3, 4}, shape_b[1] = {3}, id = 99;
    CHECK_OK(tritter_phase_trainer_add_param(tr, shape_w, 2, &id));
    CHECK(id == 0);
    CHECK_OK(tritter_phase_trainer_add_param(tr, shape_b, 1, &id));
    CHECK(id == 1);
    CHECK_OK(tritter_phase_trainer_add_param(tr, NULL, 0, &id)); /* a scalar */
    CHECK(id == 2);
    const size_t numel[3] = {12, 3, 1};
    size_t n = 0;
    CHECK_OK(tritter_phase_trainer_param_numel(tr, 0, &n));
    CHECK(n == 12);

    /* The history the reference keeps: step numbers of backward steps. */
    size_t hist_t[8], nh = 0;
    float g[12], p[12];
    size_t predicted = 0;
    for (size_t t = 0; t < 120; t++) {
        tritter_step_info_t info;
        CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
        CHECK(info.step == t && info.phase == ref_phase(&cfg, t));
        CHECK(info.needs_backward == (info.phase != TRITTER_PHASE_PREDICT));
        for (size_t k = 0; k < 3; k++) {
            if (info.needs_backward) {
                for (size_t e = 0; e < numel[k]; e++) g[e] = grad_of(t, e + 100 * k);
                CHECK_OK(tritter_phase_trainer_record(tr, k, g, numel[k]));
            } else {
                CHECK_OK(tritter_phase_trainer_predict(tr, k, p, 12));
                size_t newest = hist_t[nh - 1];
                double s[8], w[8], gv[8];
                for (size_t i = 0; i < nh; i++) {
                    s[i] = (double)hist_t[i] - (double)newest;
                    w[i] = pow(0.95, (double)(newest - hist_t[i]));
                }
                double at = (double)(t - newest < 3 ? t - newest : 3);
                for (size_t e = 0; e < numel[k]; e++) {
                    for (size_t i = 0; i < nh; i++) gv[i] = grad_of(hist_t[i], e + 100 * k);
                    double want = ref_wls(s, gv, w, nh, at);
                    /* f32 arithmetic over <= 8 terms of size ~1 (|coefficients| <= 3). */
                    CHECK(fabs(p[e] - want) <= 1e-5 * (1 + fabs(want)));
                }
                predicted++;
            }
        }
        if (info.needs_backward) {
            if (nh == 8) { memmove(hist_t, hist_t + 1, 7 * sizeof *hist_t); nh = 7; }
            hist_t[nh++] = t;
        }
        CHECK_OK(tritter_phase_trainer_end_step(tr, 1.0f, info.needs_backward ? 0.02 : 0.01));
    }
    CHECK(predicted > 0);
    tritter_phase_stats_t st;
    CHECK_OK(tritter_phase_trainer_stats(tr, &st));
    /* 120 steps = 10 warmup + 4 cycles of 25 (16 predict each) + 10 (5 full, 4 predict, 1 correct). */
    CHECK(st.steps == 120 && st.predict_steps == 4 * 16 + 4 && st.backward_passes == 120 - st.predict_steps);
    CHECK(st.warmup_steps == 10 && st.full_steps == 25 && st.correct_steps == 17 && st.backoffs == 0);
    CHECK(st.timed_backward_steps == st.backward_passes && st.timed_predict_steps == st.predict_steps);
    CHECK(fabs(st.step_ratio - 120.0 / 52.0) < 1e-12);
    double want_speedup = 120 * 0.02 / (52 * 0.02 + 68 * 0.01);
    CHECK(fabs(st.measured_speedup - want_speedup) < 1e-9);
    CHECK(st.memory_bytes == 16 * 8 * 4);
    CHECK(st.error_samples == st.full_steps + st.correct_steps);
    CHECK(st.mean_prediction_error > 0 && isfinite(st.mean_last_gradient_error));
    CHECK(st.params_wls == 3 && st.params_last == 0 && st.params_ema == 0 && st.runs == 5);
    tritter_phase_param_stats_t ps;
    CHECK_OK(tritter_phase_trainer_param_stats(tr, 1, &ps));
    CHECK(ps.predictor == TRITTER_PREDICTOR_WLS && ps.checks == st.backward_passes - 1);
    CHECK(isfinite(ps.rel_error_wls) && isfinite(ps.rel_error_last) && isnan(ps.rel_error_ema));
    CHECK(isfinite(ps.score_wls) && isnan(ps.score_last) && ps.cosine_wls <= 1.0);
    tritter_phase_trainer_free(tr);
}

static void test_linear_exact_bf16(void) {
    tritter_phase_config_t cfg;
    CHECK_OK(tritter_phase_config_conservative(&cfg));
    CHECK(cfg.warmup_steps == 20 && cfg.full_steps == 10 && cfg.predict_steps == 6 && cfg.correct_every == 3);
    cfg.history_bf16 = true;
    cfg.prediction_horizon = 100;
    tritter_phase_trainer_t *tr = NULL;
    CHECK_OK(tritter_phase_trainer_new(&cfg, &tr));
    size_t shape[1] = {5}, id;
    CHECK_OK(tritter_phase_trainer_add_param(tr, shape, 1, &id));
    size_t predicted = 0;
    for (size_t t = 0; t < 80; t++) {
        tritter_step_info_t info;
        float g[5];
        /* Small dyadic values: exact in bf16. */
        for (int e = 0; e < 5; e++) g[e] = (float)(e - 2) + 0.25f * (float)e * (float)t;
        CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
        if (info.needs_backward) {
            CHECK_OK(tritter_phase_trainer_record(tr, 0, g, 5));
        } else {
            float p[5];
            CHECK_OK(tritter_phase_trainer_predict(tr, 0, p, 5));
            /* Exact up to f32 rounding of the coefficients and sums. */
            for (int e = 0; e < 5; e++) CHECK(fabsf(p[e] - g[e]) <= 1e-5f * (1 + fabsf(g[e])));
            predicted++;
        }
        CHECK_OK(tritter_phase_trainer_end_step(tr, 1.0f, -1.0));
    }
    CHECK(predicted == 3 * 4 + 2);
    tritter_phase_stats_t st;
    CHECK_OK(tritter_phase_trainer_stats(tr, &st));
    CHECK(st.memory_bytes == 5 * 8 * 2);
    CHECK(st.timed_backward_steps == 0 && isnan(st.measured_speedup));
    CHECK(st.mean_prediction_error < 1e-6);
    tritter_phase_trainer_free(tr);
}

static void test_errors(void) {
    tritter_phase_config_t cfg;
    CHECK_OK(tritter_phase_config_default(&cfg));
    tritter_phase_trainer_t *tr = NULL;
    CHECK_ERR(tritter_phase_config_default(NULL), TRITTER_ERR_NULL_POINTER, "config_out");
    CHECK_ERR(tritter_phase_config_conservative(NULL), TRITTER_ERR_NULL_POINTER, "config_out");
    CHECK_ERR(tritter_phase_trainer_new(&cfg, NULL), TRITTER_ERR_NULL_POINTER, "trainer_out");
    cfg.history_window = 0;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "history_window");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.history_decay = 1.5f;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "history_decay");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.loss_increase_threshold = -1;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "loss_increase_threshold");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.ema_decay = 0.0f;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "ema_decay");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.max_error = NAN;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "max_error");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.schedule = 7;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "schedule");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.predictors = 0;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "predictors");
    cfg.predictors = 8;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "predictors");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.min_checks = 0;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "min_checks");
    CHECK_ERR(tritter_phase_config_seed(NULL), TRITTER_ERR_NULL_POINTER, "config_out");
    CHECK_OK(tritter_phase_config_default(&cfg));
    cfg.warmup_steps = SIZE_MAX;
    CHECK_ERR(tritter_phase_trainer_new(&cfg, &tr), TRITTER_ERR_INVALID_ARGUMENT, "warmup_steps");

    CHECK_OK(tritter_phase_trainer_new(NULL, &tr)); /* defaults */
    tritter_step_info_t info;
    size_t id, shape[2] = {2, 3}, zero[2] = {2, 0}, huge[2] = {SIZE_MAX / 2, 4};
    CHECK_ERR(tritter_phase_trainer_begin_step(tr, &info), TRITTER_ERR_INVALID_STATE, "no parameters");
    CHECK_ERR(tritter_phase_trainer_add_param(NULL, shape, 2, &id), TRITTER_ERR_NULL_POINTER, "trainer");
    CHECK_ERR(tritter_phase_trainer_add_param(tr, NULL, 2, &id), TRITTER_ERR_NULL_POINTER, "shape");
    CHECK_ERR(tritter_phase_trainer_add_param(tr, shape, 2, NULL), TRITTER_ERR_NULL_POINTER, "id_out");
    CHECK_ERR(tritter_phase_trainer_add_param(tr, zero, 2, &id), TRITTER_ERR_INVALID_ARGUMENT, "shape");
    CHECK_ERR(tritter_phase_trainer_add_param(tr, huge, 2, &id), TRITTER_ERR_SIZE_OVERFLOW, "shape");
    CHECK_ERR(tritter_phase_trainer_add_param(tr, shape, 33, &id), TRITTER_ERR_INVALID_ARGUMENT, "ndim");
    CHECK_OK(tritter_phase_trainer_add_param(tr, shape, 2, &id));
    size_t n;
    CHECK_ERR(tritter_phase_trainer_param_numel(tr, 1, &n), TRITTER_ERR_INVALID_ARGUMENT, "param");
    CHECK_ERR(tritter_phase_trainer_param_numel(tr, 0, NULL), TRITTER_ERR_NULL_POINTER, "numel_out");
    float g[6] = {1, 2, 3, 4, 5, 6}, out[6];
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, g, 6), TRITTER_ERR_INVALID_STATE, "no step in progress");
    CHECK_ERR(tritter_phase_trainer_end_step(tr, 1.0f, -1.0), TRITTER_ERR_INVALID_STATE, "no step in progress");
    CHECK_ERR(tritter_phase_trainer_begin_step(tr, NULL), TRITTER_ERR_NULL_POINTER, "info_out");
    CHECK_ERR(tritter_phase_trainer_begin_step(NULL, &info), TRITTER_ERR_NULL_POINTER, "trainer");
    CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
    CHECK(info.phase == TRITTER_PHASE_WARMUP);
    CHECK_ERR(tritter_phase_trainer_begin_step(tr, &info), TRITTER_ERR_INVALID_STATE, "end_step");
    CHECK_ERR(tritter_phase_trainer_add_param(tr, shape, 2, &id), TRITTER_ERR_INVALID_STATE, "before the first");
    CHECK_ERR(tritter_phase_trainer_predict(tr, 0, out, 6), TRITTER_ERR_INVALID_STATE, "warmup");
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, g, 5), TRITTER_ERR_SHAPE_MISMATCH, "grad");
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, NULL, 6), TRITTER_ERR_NULL_POINTER, "grad");
    CHECK_ERR(tritter_phase_trainer_record(tr, 7, g, 6), TRITTER_ERR_INVALID_ARGUMENT, "param");
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, g, SIZE_MAX / 2), TRITTER_ERR_SIZE_OVERFLOW, "grad");
    g[4] = NAN;
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, g, 6), TRITTER_ERR_NON_FINITE, "grad");
    g[4] = 5;
    CHECK_ERR(tritter_phase_trainer_end_step(tr, 1.0f, -1.0), TRITTER_ERR_INVALID_STATE, "parameter 0");
    CHECK_OK(tritter_phase_trainer_record(tr, 0, g, 6));
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, g, 6), TRITTER_ERR_INVALID_STATE, "already recorded");
    CHECK_ERR(tritter_phase_trainer_end_step(tr, 1.0f, NAN), TRITTER_ERR_INVALID_ARGUMENT, "seconds");
    CHECK_ERR(tritter_phase_trainer_end_step(tr, 1.0f, INFINITY), TRITTER_ERR_INVALID_ARGUMENT, "seconds");
    CHECK_ERR(tritter_phase_trainer_end_step(NULL, 1.0f, 0.0), TRITTER_ERR_NULL_POINTER, "trainer");
    CHECK_OK(tritter_phase_trainer_end_step(tr, 1.0f, 0.0));
    /* Guarded default: warmup 0..9, three clean checks (steps 10-12; a constant
     * gradient is predicted exactly), then a run of one Predict step. */
    for (;;) {
        CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
        if (!info.needs_backward) break;
        CHECK(info.reason == (info.step <= 10 ? TRITTER_REASON_WARMUP : TRITTER_REASON_PROBING));
        CHECK_OK(tritter_phase_trainer_record(tr, 0, g, 6));
        CHECK_OK(tritter_phase_trainer_end_step(tr, 1.0f, -1.0));
    }
    CHECK(info.step == 13 && info.phase == TRITTER_PHASE_PREDICT && info.reason == TRITTER_REASON_ERROR_BELOW_THRESHOLD);
    CHECK_ERR(tritter_phase_trainer_record(tr, 0, g, 6), TRITTER_ERR_INVALID_STATE, "Predict");
    CHECK_ERR(tritter_phase_trainer_predict(tr, 0, out, 5), TRITTER_ERR_BUFFER_TOO_SMALL, "out");
    CHECK_ERR(tritter_phase_trainer_predict(tr, 0, NULL, 6), TRITTER_ERR_NULL_POINTER, "out");
    CHECK_ERR(tritter_phase_trainer_predict(tr, 3, out, 6), TRITTER_ERR_INVALID_ARGUMENT, "param");
    CHECK_ERR(tritter_phase_trainer_predict(NULL, 0, out, 6), TRITTER_ERR_NULL_POINTER, "trainer");
    CHECK_OK(tritter_phase_trainer_predict(tr, 0, out, 6));
    for (int e = 0; e < 6; e++) CHECK(out[e] == g[e]); /* constant history predicts itself */
    CHECK_OK(tritter_phase_trainer_end_step(tr, NAN, -1.0)); /* no loss on a Predict step: fine */
    /* The run is checked by a Correct step; a non-finite loss there backs off. */
    CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
    CHECK(info.phase == TRITTER_PHASE_CORRECT && info.reason == TRITTER_REASON_CHECK);
    CHECK_OK(tritter_phase_trainer_record(tr, 0, g, 6));
    CHECK_OK(tritter_phase_trainer_end_step(tr, INFINITY, -1.0));
    tritter_phase_stats_t st;
    CHECK_OK(tritter_phase_trainer_stats(tr, &st));
    CHECK(st.backoffs == 1 && st.last_reason == TRITTER_REASON_NON_FINITE_LOSS && st.current_predict_steps == 1);
    CHECK(st.last_error == 0.0 && st.last_cosine == 1.0 && st.runs == 1);
    CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
    CHECK(info.phase == TRITTER_PHASE_FULL && info.reason == TRITTER_REASON_NON_FINITE_LOSS);
    tritter_phase_param_stats_t ps;
    CHECK_ERR(tritter_phase_trainer_param_stats(tr, 1, &ps), TRITTER_ERR_INVALID_ARGUMENT, "param");
    CHECK_ERR(tritter_phase_trainer_param_stats(tr, 0, NULL), TRITTER_ERR_NULL_POINTER, "stats_out");
    CHECK_ERR(tritter_phase_trainer_param_stats(NULL, 0, &ps), TRITTER_ERR_NULL_POINTER, "trainer");
    CHECK_OK(tritter_phase_trainer_param_stats(tr, 0, &ps));
    CHECK(ps.predictor == TRITTER_PREDICTOR_LAST && ps.rel_error_last == 0.0 && fabs(ps.cosine_ema - 1.0) < 1e-6);
    CHECK_ERR(tritter_phase_trainer_stats(tr, NULL), TRITTER_ERR_NULL_POINTER, "stats_out");
    CHECK_ERR(tritter_phase_trainer_stats(NULL, &st), TRITTER_ERR_NULL_POINTER, "trainer");
    tritter_phase_trainer_free(tr); /* freeing with a step open is fine */
    tritter_phase_trainer_free(NULL);
}

/* Guarded schedule: a smooth sequence (a line in t) enters prediction and stays
 * there with a small error; uniform noise never leaves backward passes. */
static void test_guarded(void) {
    CHECK(strcmp(tritter_phase_reason_name(TRITTER_REASON_ERROR_ABOVE_THRESHOLD), "error_above_threshold") == 0);
    CHECK(strcmp(tritter_phase_reason_name(TRITTER_REASON_DISABLED), "disabled") == 0);
    CHECK(tritter_phase_reason_name(9) == NULL);
    CHECK(strcmp(tritter_phase_predictor_name(TRITTER_PREDICTOR_EMA), "ema") == 0);
    CHECK(tritter_phase_predictor_name(3) == NULL);
    tritter_phase_config_t cfg;
    CHECK_OK(tritter_phase_config_default(&cfg));
    CHECK(cfg.schedule == TRITTER_SCHEDULE_GUARDED && cfg.predictors == 7 && cfg.min_checks == 3);
    CHECK(cfg.max_error == 0.3f && cfg.predict_steps == 8 && cfg.ema_decay == 0.9f);
    for (int noisy = 0; noisy < 2; noisy++) {
        tritter_phase_trainer_t *tr = NULL;
        CHECK_OK(tritter_phase_trainer_new(&cfg, &tr));
        size_t shape[1] = {100}, id;
        CHECK_OK(tritter_phase_trainer_add_param(tr, shape, 1, &id));
        size_t predicted = 0;
        uint64_t x = 88172645463325252ull; /* xorshift64 */
        for (size_t t = 0; t < 200; t++) {
            tritter_step_info_t info;
            float g[100];
            CHECK_OK(tritter_phase_trainer_begin_step(tr, &info));
            if (info.needs_backward) {
                for (int e = 0; e < 100; e++) {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    float u = (float)(x >> 40) / (float)(1u << 24) - 0.5f;
                    g[e] = noisy ? u : 1.0f + 0.01f * (float)e + 0.002f * (float)t;
                }
                CHECK_OK(tritter_phase_trainer_record(tr, 0, g, 100));
            } else {
                CHECK(info.reason == TRITTER_REASON_ERROR_BELOW_THRESHOLD);
                CHECK_OK(tritter_phase_trainer_predict(tr, 0, g, 100));
                predicted++;
            }
            CHECK_OK(tritter_phase_trainer_end_step(tr, 1.0f, -1.0));
        }
        tritter_phase_stats_t st;
        CHECK_OK(tritter_phase_trainer_stats(tr, &st));
        if (noisy) {
            CHECK(predicted == 0 && st.last_reason == TRITTER_REASON_ERROR_ABOVE_THRESHOLD);
            CHECK(st.failed_checks == st.error_samples && st.mean_prediction_error > 0.9);
        } else {
            CHECK(predicted > 120 && st.backoffs == 0 && st.current_predict_steps == 8);
            CHECK(st.last_error < 0.01 && st.last_cosine > 0.99 && st.params_wls == 1);
        }
        CHECK(st.predict_steps == predicted);
        tritter_phase_trainer_free(tr);
    }
}

int main(void) {
    test_guarded();
    test_schedule_and_fit();
    test_linear_exact_bf16();
    test_errors();
    CHECK_DONE("predict");
}
