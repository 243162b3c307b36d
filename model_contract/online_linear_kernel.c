/* OnlineLinear's learn step and forecast in C: model_contract/online_linear.py, the same algorithm step by step.
 *
 * Built on first use by model_contract/online_linear_kernel.py (cc -O3 -shared -fPIC -ffp-contract=off: IEEE
 * semantics, no fused multiply-add, no fast-math) and called through cffi. Every elementwise step is the
 * IEEE operation the numpy code does (the same order of operations in every expression); the dot products
 * sum in index order, where numpy's BLAS may group them otherwise (a difference of a few ulps). The state is
 * the model's own numpy arrays (mean, var, sd = sqrt(var), w, P) and its scalars (s: dy2, e2, n, skipped,
 * resets); nothing here allocates or keeps anything between calls.
 */
#include <math.h>
#include <stddef.h>

typedef struct {
    long long d;          /* inputs + 1 (the bias) */
    long long ti;         /* the target's column in the window */
    long long ninputs;    /* 0: the whole flattened window; else the positions in inputs */
    const long long *inputs;
    long long max_input;  /* the largest of inputs (a window must be longer) */
    double lam, ds, prior, clip, max_change, max_trace;
    double *s;            /* dy2, e2, n, skipped, resets */
    double *mean, *var, *sd, *w, *P;
    int err;              /* set by ol_predict: 1 if the window did not fit (it returned NaN) */
} ol_model;

enum { DY2, E2, N, SKIPPED, RESETS };
#define MAX_D 4096

/* numpy's clip on floats: max(x, lo) then min(., hi), a NaN x stays NaN */
static inline double clip3(double x, double lo, double hi) {
    double t = isnan(x) ? x : (x > lo ? x : lo);
    return isnan(t) ? t : (t < hi ? t : hi);
}

static double dot(const double *a, const double *b, long long n) {
    double acc = 0.0;
    for (long long i = 0; i < n; i++) acc += a[i] * b[i];
    return acc;
}

/* the model's inputs from the window x (n numbers): 0, or -1 if the window does not fit */
static int gather(const ol_model *m, const double *x, long long n, double *flat) {
    long long size = m->d - 1;
    if (m->ninputs) {
        if (m->ninputs != size || m->max_input >= n) return -1;
        for (long long i = 0; i < size; i++) {
            long long j = m->inputs[i];
            if (j < 0 || j >= n) return -1; /* never read outside the window (numpy wraps a negative position) */
            flat[i] = x[j];
        }
    } else {
        if (n != size) return -1;
        for (long long i = 0; i < size; i++) flat[i] = x[i];
    }
    return 0;
}

/* z = [clip((flat - mean) / sd, -clip, clip), 1] */
static void features(const ol_model *m, const double *flat, double *z) {
    long long size = m->d - 1;
    double c = m->clip;
    for (long long i = 0; i < size; i++) z[i] = clip3((flat[i] - m->mean[i]) / m->sd[i], -c, c);
    z[size] = 1.0;
}

static void reset(ol_model *m) {
    long long d = m->d;
    m->s[RESETS] += 1.0;
    for (long long i = 0; i < d; i++) m->w[i] = 0.0;
    for (long long i = 0; i < d * d; i++) m->P[i] = 0.0;
    for (long long i = 0; i < d; i++) m->P[i * d + i] = 1.0 * m->prior;
}

/* the forecast from window x (n numbers, its newest target value at x[last]); NaN with m->err = 1 if the
 * window does not fit the model */
double ol_predict(ol_model *m, const double *x, long long n, long long last) {
    double flat[MAX_D], z[MAX_D];
    long long d = m->d;
    m->err = 0;
    if (last < 0 || last >= n || d > MAX_D || gather(m, x, n, flat)) {
        m->err = 1;
        return NAN;
    }
    double lastv = x[last];
    if (m->s[N] < 2.0) return lastv;
    features(m, flat, z);
    double change = dot(m->w, z, d);
    double bound = m->max_change * sqrt(m->s[DY2]);
    if (!isfinite(change)) return lastv;
    return lastv + (change > bound ? bound : (change < -bound ? -bound : change));
}

/* learn the truth y of the forecast made from window x (n numbers, newest target value at x[last]).
 * 0: learned (or skipped / reset, counted in s), -1: the window does not fit the model */
int ol_learn(ol_model *m, const double *x, long long n, long long last, double y) {
    double flat[MAX_D], diff[MAX_D], z[MAX_D], Pz[MAX_D], k[MAX_D];
    long long d = m->d, size = d - 1;
    if (last < 0 || last >= n || d > MAX_D || d < 1) return -1;
    if (gather(m, x, n, flat)) return -1;
    double *s = m->s, *mean = m->mean, *var = m->var, *sd = m->sd, *w = m->w, *P = m->P;
    double dy = y - x[last];
    int ok = fabs(dy) < 1e150;
    for (long long i = 0; ok && i < size; i++) ok = fabs(flat[i]) < 1e150;
    if (!ok) {
        s[SKIPPED] += 1.0;
        return 0;
    }
    double nn = s[N] + 1.0;
    s[N] = nn;
    double ds = nn * (1.0 - m->ds) > 1.0 ? m->ds : 1.0 - 1.0 / nn;
    double a = 1.0 - ds;
    double clip = m->clip;
    if (nn == 1.0) {
        for (long long i = 0; i < size; i++) mean[i] = flat[i];
    } else {
        for (long long i = 0; i < size; i++) diff[i] = flat[i] - mean[i];
        if (nn > 20.0) {
            for (long long i = 0; i < size; i++) {
                double hi = sd[i] * clip;
                diff[i] = clip3(diff[i], -hi, hi);
            }
        }
        for (long long i = 0; i < size; i++) {
            double tmp = diff[i] * a;
            mean[i] = mean[i] + tmp;
            tmp = tmp * diff[i];
            double v = (var[i] + tmp) * ds;
            v = fmax(v, 1e-12);
            var[i] = v;
            sd[i] = sqrt(v);
        }
    }
    double dy2 = dy * dy;
    if (nn > 20.0 && dy2 > clip * clip * s[DY2]) dy2 = clip * clip * s[DY2];
    s[DY2] = nn > 1.0 ? ds * s[DY2] + a * dy2 : dy2;
    features(m, flat, z);
    double err = dy - dot(w, z, d);
    if (nn > 20.0 && s[E2] > 0.0) {
        double bound = clip * sqrt(s[E2]);
        err = err > bound ? bound : (err < -bound ? -bound : err);
    }
    s[E2] = nn > 1.0 ? ds * s[E2] + a * err * err : err * err;
    for (long long i = 0; i < d; i++) Pz[i] = dot(P + i * d, z, d);
    double denom = m->lam + dot(z, Pz, d);
    if (!(denom > 0.0 && isfinite(denom))) {
        reset(m);
        return 0;
    }
    for (long long i = 0; i < d; i++) {
        k[i] = Pz[i] / denom;
        w[i] = w[i] + k[i] * err;
    }
    double lam = m->lam;
    for (long long i = 0; i < d; i++) {
        double *row = P + i * d, ki = k[i];
        for (long long j = 0; j < d; j++) row[j] = (row[j] - ki * Pz[j]) / lam;
    }
    double quick = 0.0;
    for (long long i = 0; i < d; i++) quick += P[i * d + i];
    double ww = dot(w, w, d);
    if (!(quick < m->max_trace * (1.0 - 1e-6) && isfinite(ww))) {
        double trace = 0.0;
        for (long long i = 0; i < d; i++) trace += P[i * d + i];
        int wfinite = 1; /* w @ w finite, or else every weight finite (w @ w overflowed) */
        for (long long i = 0; !isfinite(ww) && i < d; i++)
            if (!isfinite(w[i])) {
                wfinite = 0;
                break;
            }
        if (!isfinite(trace) || !wfinite) {
            reset(m);
            return 0;
        }
        if (trace > m->max_trace) {
            double f = m->max_trace / trace;
            for (long long i = 0; i < d * d; i++) P[i] *= f;
        }
    }
    if (fmod(nn, 1000.0) == 0.0) {
        for (long long i = 0; i < d; i++)
            for (long long j = i; j < d; j++) {
                double v = (P[i * d + j] + P[j * d + i]) * 0.5;
                P[i * d + j] = v;
                P[j * d + i] = v;
            }
    }
    return 0;
}

/* ---- the context stack's learn step (model_contract/context_stack.py ContextStack.learn_one, and the
 * expert-weighting layer of edge_app/context_stacking.py over it): the guard's forgotten squared errors, the
 * linear model's step (the layer's twin and weights), the coefficients ---- */
typedef struct {
    ol_model *m;
    long long rowlen;     /* the context row's length (window inputs, batch - last, speed - last, 3 forecasts) */
    long long k, nm;      /* window inputs; model inputs the linear model reads (2, or fewer: an ablation) */
    long long last;       /* the newest target value's position in the row */
    long long use_batch, use_speed;
    double ed;            /* the guard's forgetting factor */
    double *g;            /* mse[4] (batch, speed, persistence, the stack), seen, skipped, coef[2],
                           * muted[2], bad_inputs, fallbacks, weights[2] */
    double *row;          /* the stack's row (the linear model's inputs, then the forecasts) */
    long long ninputs;    /* 0: the whole window; else the window positions in inputs */
    const long long *inputs;
    long long max_input;
    double limit;         /* mute^2: a squared error over limit x persistence's mutes */
    /* the expert-weighting layer over the stack (edge_app/context_stacking.py ContextStacking, blend pair or
     * experts; edge_app/expert_weights.py ExpertWeights, the same steps): twin NULL = no layer */
    ol_model *twin;       /* the stack's model without its two model inputs: reads the row's first k numbers */
    long long ne;         /* experts: 2 (the stack, the twin) or 6 (+ persistence, batch, speed, static) */
    double *e;            /* the layer's state: v, seen, L[ne], w[ne] */
    double eta, ed2, edv; /* its eta, forgetting of the losses, of the blend's mean square error */
} cs_stack;

#define HUGE_ERR 1e150
#define BIG_ERR 1e75
#define WILD 1e4
#define NEGLIGIBLE2 1e-6 /* NEGLIGIBLE^2: a model's change below 1e-3 x the RMS observed change is read as 0 */
#define STATIC_SPEED 0.3 /* the static expert: 0.3 speed + 0.7 batch (context_stacking._STATIC_SPEED) */
#define MAX_EXPERTS 6

/* ---- the expert-weighting layer (ExpertWeights): state e = v, seen, L[n], w[n] ---- */
static inline int in_range(double x) { return -HUGE_ERR < x && x < HUGE_ERR; }

/* ExpertWeights.predict_one: the weighted mean of the forecasts in range (their weights renormalised) */
static double ew_predict(const double *e, long long n, const double *f) {
    const double *w = e + 2 + n;
    double num = 0.0, den = 0.0;
    for (long long i = 0; i < n; i++)
        if (in_range(f[i])) {
            num += w[i] * f[i];
            den += w[i];
        }
    if (den > 0.0) return num / den;
    for (long long i = 0; i < n; i++)
        if (in_range(f[i])) return f[i];
    return NAN;
}

/* ExpertWeights._set_weights: exp(-eta (L - min L)), normalised */
static void ew_weights(double *e, long long n, double eta) {
    double *L = e + 2, *w = e + 2 + n;
    double lo = L[0], total = 0.0;
    for (long long i = 1; i < n; i++)
        if (L[i] < lo) lo = L[i];
    for (long long i = 0; i < n; i++) {
        double x = eta * (L[i] - lo);
        w[i] = x < 700.0 ? exp(-x) : 0.0;
        total += w[i];
    }
    for (long long i = 0; i < n; i++) w[i] /= total;
}

/* ExpertWeights.learn_one: the truth y of forecasts f and of the blend's own forecast blend */
static void ew_learn(cs_stack *c, const double *f, double y, double blend) {
    double *e = c->e, *L = e + 2;
    long long n = c->ne;
    if (!in_range(y)) return;
    if (!in_range(blend)) blend = ew_predict(e, n, f);
    double eb = blend - y;
    double sq = (-BIG_ERR < eb && eb < BIG_ERR) ? eb * eb : 1e150;
    double seen = e[1] + 1.0;
    e[1] = seen;
    double dv = seen * (1.0 - c->edv) > 1.0 ? c->edv : 1.0 - 1.0 / seen; /* a plain mean at first */
    if (seen > 10.0 && 0.0 < 1e4 * e[0] && 1e4 * e[0] < sq) sq = 1e4 * e[0];
    double v = dv * e[0] + (1.0 - dv) * sq;
    e[0] = v;
    if (!(v > 0.0)) return;
    double d = c->ed2, cap = 1e4;
    for (long long i = 0; i < n; i++) {
        double err = f[i] - y;
        double loss = (-BIG_ERR < err && err < BIG_ERR) ? err * err / v : cap;
        L[i] = d * L[i] + (loss < cap ? loss : cap);
    }
    ew_weights(e, n, c->eta);
}

/* the experts' forecasts: the stack's f, the twin's g (, persistence, batch, speed, static) */
static void ew_forecasts(long long n, double f, double g, double last, double batch, double speed, double *out) {
    out[0] = f;
    out[1] = g;
    if (n > 2) {
        out[2] = last;
        out[3] = batch;
        out[4] = speed;
        out[5] = batch + STATIC_SPEED * (speed - batch);
    }
}

/* learn the truth y of the forecast made from the context row ctx (n numbers). 1: learned, 0: skipped (counted),
 * -1: the row does not fit */
int cs_learn(cs_stack *c, const double *ctx, long long n, double batch, double speed, double y) {
    double *g = c->g;
    if (n != c->rowlen) return -1;
    double ep = ctx[c->last] - y;
    if (!(-HUGE_ERR < ep && ep < HUGE_ERR)) {
        g[5] += 1.0;
        return 0;
    }
    double e[4] = {batch - y, speed - y, ep, ctx[c->k + 2] - y};
    double cap = WILD * (g[2] + ep * ep) + 1e-300;
    double seen = g[4] + 1.0;
    g[4] = seen;
    double d = seen * (1.0 - c->ed) > 1.0 ? c->ed : 1.0 - 1.0 / seen;
    double a = 1.0 - d;
    for (int i = 0; i < 4; i++) {
        double sq = (-BIG_ERR < e[i] && e[i] < BIG_ERR) ? e[i] * e[i] : cap;
        g[i] = d * g[i] + a * (sq > cap ? cap : sq);
    }
    if (ol_learn(c->m, ctx, c->k + c->nm, c->m->ti, y)) return -1;
    if (c->twin) { /* the layer: the twin learns the row without the model inputs, then the weights */
        double f[MAX_EXPERTS];
        if (ol_learn(c->twin, ctx, c->k, c->twin->ti, y)) return -1;
        ew_forecasts(c->ne, ctx[c->k + 3], ctx[c->k + 4], ctx[c->last], batch, speed, f);
        ew_learn(c, f, y, ctx[c->k + 2]);
    }
    ol_model *m = c->m;
    if (m->s[N] != 0.0) {
        long long k = c->k;
        if (c->nm == 2) {
            g[6] = m->w[k] / sqrt(m->var[k]);
            g[7] = m->w[k + 1] / sqrt(m->var[k + 1]);
        } else {
            double cc = c->nm ? m->w[k] / sqrt(m->var[k]) : 0.0;
            g[6] = c->use_batch ? cc : 0.0;
            g[7] = (c->use_speed && !c->use_batch) ? cc : 0.0;
        }
    }
    return 1;
}

/* One model's change as the stack reads it: 0 when the model is not used, muted by the guard (counted in
 * *muted), absurd (counted in *huge) or negligible (its square below tiny); else the change itself. */
static inline double model_input(int use, int muted, double d, double tiny, double *muted_count, double *huge) {
    if (!use) return 0.0;
    if (muted) {
        *muted_count += 1.0;
        return 0.0;
    }
    if (!(-HUGE_ERR < d && d < HUGE_ERR)) {
        *huge += 1.0;
        return 0.0;
    }
    return d * d < tiny ? 0.0 : d;
}

/* the context stack's forecast (ContextStack.predict_one, with the expert-weighting layer if it has one) from the
 * lag window win (n numbers, the stack's window shape): the row, the guard's verdict, the linear model's forecast
 * (the layer's), the guard's fallback. NaN with c->m->err = 1 if the window does not fit */
double cs_predict(cs_stack *c, const double *win, long long n, double batch, double speed) {
    double *g = c->g, *row = c->row;
    long long k = c->k;
    if (c->ninputs) {
        if (c->ninputs != k || c->max_input >= n) {
            c->m->err = 1;
            return NAN;
        }
        for (long long i = 0; i < k; i++) {
            long long j = c->inputs[i];
            if (j < 0 || j >= n) { /* never read outside the window */
                c->m->err = 1;
                return NAN;
            }
            row[i] = win[j];
        }
    } else {
        if (n != k) {
            c->m->err = 1;
            return NAN;
        }
        for (long long i = 0; i < k; i++) row[i] = win[i];
    }
    double last = row[c->last];
    double db = batch - last, ds = speed - last;
    int mb = 0, ms = 0, guarded = 0;
    double tiny = NEGLIGIBLE2 * c->m->s[DY2];
    if (g[4] >= 10.0) { /* GUARD_MIN_RECORDS */
        double limit = c->limit * g[2];
        mb = !(g[0] <= limit);
        ms = !(g[1] <= limit);
        guarded = !(g[3] <= limit);
    }
    db = model_input(c->use_batch, mb, db, tiny, &g[8], &g[10]);
    ds = model_input(c->use_speed, ms, ds, tiny, &g[9], &g[10]);
    if (c->nm == 2) {
        row[k] = db;
        row[k + 1] = ds;
    } else {
        row[k] = c->use_batch ? db : (c->use_speed ? ds : 0.0);
        row[k + 1] = 0.0;
    }
    double f = ol_predict(c->m, row, k + c->nm, c->m->ti);
    if (c->m->err) return NAN;
    double cb = mb ? 0.0 : g[6], cs = ms ? 0.0 : g[7];
    if (c->twin) { /* the layer: the stack, its twin (, ...) weighted; the coefficients: the layer's shares */
        double ef[MAX_EXPERTS];
        double tw = ol_predict(c->twin, row, k, c->twin->ti);
        if (c->twin->err) {
            c->m->err = 1;
            return NAN;
        }
        ew_forecasts(c->ne, f, tw, last, batch, speed, ef);
        double out = ew_predict(c->e, c->ne, ef);
        const double *w = c->e + 2 + c->ne;
        row[k + 3] = f;
        row[k + 4] = tw;
        f = out;
        cb = w[0] * cb;
        cs = w[0] * cs;
        if (c->ne > 2) {
            cb = cb + w[3] + (1.0 - STATIC_SPEED) * w[5];
            cs = cs + w[4] + STATIC_SPEED * w[5];
        }
    }
    row[k + 2] = f;
    g[12] = cb;
    g[13] = cs;
    if (guarded && isfinite(last)) {
        g[11] += 1.0;
        return last;
    }
    if (isfinite(f)) return f;
    return isfinite(batch) ? batch : speed;
}
