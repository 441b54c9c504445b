/* cosmoe_example: exercises the whole C API of libcosmoe and checks its documented behaviour.
 *
 * usage: cosmoe_example MODEL TRUNCATED_MODEL PROMPT_IDS EXPECTED_IDS
 *
 *   MODEL            a model file (.gguf) with a tokenizer
 *   TRUNCATED_MODEL  a damaged copy of it (cut short), which must fail to load
 *   PROMPT_IDS       the prompt as comma-separated token ids: 1,15,27
 *   EXPECTED_IDS     the greedy continuation of the prompt, comma-separated; its length is the number of
 *                    tokens each check generates
 *
 * Prints one "ok: ..." line per check; on the first failure prints "FAIL: ..." (with cosmoe_last_error())
 * and exits with status 1. Everything it creates is freed before it exits with 0, so that Valgrind can
 * check for leaks. Plain C11 and POSIX threads.
 */
#include "cosmoe.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------------
 * Checking and reporting
 * ------------------------------------------------------------------------------------------------- */

static const char *status_name(cosmoe_status s) {
    switch (s) {
    case COSMOE_OK: return "COSMOE_OK";
    case COSMOE_ERR_INVALID_ARGUMENT: return "COSMOE_ERR_INVALID_ARGUMENT";
    case COSMOE_ERR_IO: return "COSMOE_ERR_IO";
    case COSMOE_ERR_FORMAT: return "COSMOE_ERR_FORMAT";
    case COSMOE_ERR_BUFFER_TOO_SMALL: return "COSMOE_ERR_BUFFER_TOO_SMALL";
    case COSMOE_ERR_CONTEXT_FULL: return "COSMOE_ERR_CONTEXT_FULL";
    case COSMOE_ERR_CANCELLED: return "COSMOE_ERR_CANCELLED";
    case COSMOE_ERR_OUT_OF_MEMORY: return "COSMOE_ERR_OUT_OF_MEMORY";
    case COSMOE_ERR_INTERNAL: return "COSMOE_ERR_INTERNAL";
    }
    return "(unknown status)";
}

static const char *stop_name(cosmoe_stop s) {
    switch (s) {
    case COSMOE_STOP_EOS: return "COSMOE_STOP_EOS";
    case COSMOE_STOP_MAX_TOKENS: return "COSMOE_STOP_MAX_TOKENS";
    case COSMOE_STOP_CALLBACK: return "COSMOE_STOP_CALLBACK";
    case COSMOE_STOP_CONTEXT_FULL: return "COSMOE_STOP_CONTEXT_FULL";
    }
    return "(unknown stop reason)";
}

/* Prints the failure (with this thread's last error) and ends the process. */
static void fail_at(const char *file, int line, const char *expr, const char *fmt, ...) {
    const char *err = cosmoe_last_error();
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    printf("FAIL: %s (%s:%d: `%s` is false); cosmoe_last_error(): \"%s\"\n", msg, file, line, expr,
           err ? err : "(NULL)");
    fflush(stdout);
    exit(1);
}

/* CHECK(condition, "printf format", args...): fail with the message unless the condition holds. */
#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) fail_at(__FILE__, __LINE__, #cond, __VA_ARGS__);                             \
    } while (0)

/* CHECK_STATUS(call, expected status, "what"): the call returns exactly the expected status. */
#define CHECK_STATUS(call, expected, what)                                                        \
    do {                                                                                          \
        cosmoe_status check_status_got_ = (call);                                                 \
        CHECK(check_status_got_ == (expected), "%s: got %s (%d), expected %s", (what),          \
              status_name(check_status_got_), (int)check_status_got_, status_name(expected));     \
    } while (0)

/* A call that must succeed. */
#define CHECK_OK(call, what) CHECK_STATUS(call, COSMOE_OK, what)

/* A misuse: the call returns COSMOE_ERR_INVALID_ARGUMENT and explains why in cosmoe_last_error(). */
#define CHECK_INVALID(call, what)                                                                 \
    do {                                                                                          \
        CHECK_STATUS(call, COSMOE_ERR_INVALID_ARGUMENT, what);                                    \
        CHECK(has_error_message(), "%s: cosmoe_last_error() is empty", (what));                  \
    } while (0)

static void ok(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("ok: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static int has_error_message(void) {
    const char *e = cosmoe_last_error();
    return e != NULL && e[0] != '\0';
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of memory\n");
        exit(1);
    }
    return p;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) {
        fprintf(stderr, "FAIL: out of memory\n");
        exit(1);
    }
    return q;
}

/* ---------------------------------------------------------------------------------------------------
 * Token id lists
 * ------------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t *v;
    size_t n;
} id_list;

/* Parses "1,2,3"; exits with a usage message on anything else. */
static id_list parse_ids(const char *arg, const char *what) {
    id_list l = {xmalloc(sizeof(int32_t) * (strlen(arg) + 1)), 0};
    const char *p = arg;
    for (;;) {
        char *end = NULL;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX || (*end != ',' && *end != '\0')) {
            fprintf(stderr, "FAIL: %s: \"%s\" is not a comma-separated list of token ids\n", what, arg);
            exit(2);
        }
        l.v[l.n++] = (int32_t)v;
        if (*end == '\0') break;
        p = end + 1;
    }
    return l;
}

static void print_ids(FILE *f, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%" PRId32, i ? "," : "", ids[i]);
}

/* 1 if the two lists are equal. */
static int ids_equal(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof(int32_t)) == 0);
}

/* Text as printable ASCII, other bytes as \xNN (the generated text of a tiny model is mostly bytes). */
static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            putchar(c);
        else
            printf("\\x%02x", c);
    }
}

/* The program's arguments, shared by all checks. */
static const char *g_model_path;
static const char *g_truncated_path;
static id_list g_prompt;
static id_list g_expected;

/* ---------------------------------------------------------------------------------------------------
 * Generation with a recording callback
 * ------------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t *ids;
    size_t n, cap;
    char *text;
    size_t text_len, text_cap;
    size_t stop_at;   /* > 0: the callback returns false on this (1-based) token */
    int bad_text;     /* the callback got text == NULL with text_len > 0 */
} recorder;

static void recorder_clear(recorder *r, size_t stop_at) {
    r->n = 0;
    r->text_len = 0;
    r->stop_at = stop_at;
    r->bad_text = 0;
}

static void recorder_free(recorder *r) {
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static bool record_token(int32_t token, const char *text, size_t text_len, void *user_data) {
    recorder *r = user_data;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->ids = xrealloc(r->ids, r->cap * sizeof(int32_t));
    }
    r->ids[r->n++] = token;
    if (text == NULL && text_len > 0) {
        r->bad_text = 1;
    } else if (text_len > 0) {
        if (r->text_len + text_len > r->text_cap) {
            r->text_cap = 2 * (r->text_len + text_len);
            r->text = xrealloc(r->text, r->text_cap);
        }
        memcpy(r->text + r->text_len, text, text_len);
        r->text_len += text_len;
    }
    return !(r->stop_at > 0 && r->n >= r->stop_at);
}

/* Evaluates the prompt and generates greedily; checks the ids are the expected ones. */
static void eval_and_generate_expected(cosmoe_session *s, recorder *r, const char *what) {
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();
    size_t n_generated = (size_t)-1;
    cosmoe_stop stop = (cosmoe_stop)-1;
    recorder_clear(r, 0);
    CHECK_OK(cosmoe_session_eval(s, g_prompt.v, g_prompt.n), what);
    CHECK_OK(cosmoe_session_generate(s, &greedy, g_expected.n, record_token, r, &n_generated, &stop), what);
    CHECK(n_generated == g_expected.n, "%s: n_generated %zu, expected %zu", what, n_generated, g_expected.n);
    CHECK(r->n == g_expected.n, "%s: the callback got %zu tokens, expected %zu", what, r->n, g_expected.n);
    CHECK(stop == COSMOE_STOP_MAX_TOKENS || stop == COSMOE_STOP_EOS, "%s: stop reason %s (%d)", what,
          stop_name(stop), (int)stop);
    if (!ids_equal(r->ids, r->n, g_expected.v, g_expected.n)) {
        printf("  got:      ");
        print_ids(stdout, r->ids, r->n);
        printf("\n  expected: ");
        print_ids(stdout, g_expected.v, g_expected.n);
        printf("\n");
        CHECK(0, "%s: the generated ids differ from the expected ones", what);
    }
    CHECK(!r->bad_text, "%s: the callback got text == NULL with text_len > 0", what);
}

/* ---------------------------------------------------------------------------------------------------
 * The checks, one function per group
 * ------------------------------------------------------------------------------------------------- */

/* Load, eval, logits, greedy generation with streamed text, and detokenize. */
static void check_generation(cosmoe_model *model, cosmoe_session *s) {
    size_t n_vocab_model = cosmoe_model_n_vocab(model);
    CHECK(n_vocab_model > 0, "cosmoe_model_n_vocab is 0");
    CHECK(cosmoe_session_n_past(s) == 0, "a new session has n_past %zu", cosmoe_session_n_past(s));

    CHECK_OK(cosmoe_session_eval(s, g_prompt.v, g_prompt.n), "eval the prompt");
    CHECK(cosmoe_session_n_past(s) == g_prompt.n, "n_past %zu after the prompt of %zu ids",
          cosmoe_session_n_past(s), g_prompt.n);
    ok("eval of %zu prompt ids; n_past %zu", g_prompt.n, cosmoe_session_n_past(s));

    const float *logits = NULL;
    size_t n_vocab = 0;
    CHECK_OK(cosmoe_session_logits(s, &logits, &n_vocab), "cosmoe_session_logits");
    CHECK(logits != NULL, "cosmoe_session_logits gave NULL logits");
    CHECK(n_vocab == n_vocab_model, "cosmoe_session_logits: n_vocab %zu, cosmoe_model_n_vocab %zu", n_vocab,
          n_vocab_model);
    float max = logits[0];
    for (size_t i = 0; i < n_vocab; i++) {
        CHECK(logits[i] == logits[i], "logit %zu is NaN", i);
        if (logits[i] > max) max = logits[i];
    }
    CHECK((size_t)g_expected.v[0] < n_vocab && logits[g_expected.v[0]] == max,
          "the first expected id %" PRId32 " is not the argmax of the logits", g_expected.v[0]);
    ok("logits: n_vocab %zu, argmax is the first expected id %" PRId32, n_vocab, g_expected.v[0]);

    recorder r = {0};
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();
    CHECK(greedy.temperature == 0.0f, "cosmoe_sampling_default_params: temperature %g, expected 0 (greedy)",
          (double)greedy.temperature);
    size_t n_generated = (size_t)-1;
    cosmoe_stop stop = (cosmoe_stop)-1;
    CHECK_OK(cosmoe_session_generate(s, &greedy, g_expected.n, record_token, &r, &n_generated, &stop),
             "greedy generate");
    CHECK(n_generated == g_expected.n, "n_generated %zu, expected %zu", n_generated, g_expected.n);
    CHECK(stop == COSMOE_STOP_MAX_TOKENS || stop == COSMOE_STOP_EOS, "stop reason %s (%d)", stop_name(stop),
          (int)stop);
    CHECK(!r.bad_text, "the callback got text == NULL with text_len > 0");
    if (!ids_equal(r.ids, r.n, g_expected.v, g_expected.n)) {
        printf("  got:      ");
        print_ids(stdout, r.ids, r.n);
        printf("\n  expected: ");
        print_ids(stdout, g_expected.v, g_expected.n);
        printf("\n");
        CHECK(0, "the generated ids differ from the expected ones");
    }
    size_t n_past = cosmoe_session_n_past(s);
    /* The last sampled token may or may not be in the context yet: either is fine. */
    CHECK(n_past == g_prompt.n + g_expected.n || n_past + 1 == g_prompt.n + g_expected.n,
          "n_past %zu after %zu prompt and %zu generated tokens", n_past, g_prompt.n, g_expected.n);
    ok("greedy generate: %zu ids as expected, stop %s, n_past %zu", n_generated, stop_name(stop), n_past);
    printf("   streamed text (%zu bytes): \"", r.text_len);
    print_escaped(r.text, r.text_len);
    printf("\"\n");

    /* detokenize: the size query, then the text, which equals the streamed text. */
    size_t len = (size_t)-1;
    CHECK_STATUS(cosmoe_detokenize(model, r.ids, r.n, NULL, 0, &len), COSMOE_ERR_BUFFER_TOO_SMALL,
                 "detokenize size query (NULL buffer, capacity 0)");
    CHECK(len != (size_t)-1, "detokenize size query did not set *len");
    char *buf = xmalloc(len + 1);
    memset(buf, 'X', len + 1);
    size_t len2 = (size_t)-1;
    CHECK_OK(cosmoe_detokenize(model, r.ids, r.n, buf, len + 1, &len2), "detokenize");
    CHECK(len2 == len, "detokenize: len %zu, but the size query said %zu", len2, len);
    CHECK(buf[len] == '\0', "detokenize with capacity > len did not add a NUL");
    if (len != r.text_len || memcmp(buf, r.text, len) != 0) {
        printf("  detokenized: \"");
        print_escaped(buf, len);
        printf("\"\n  streamed:    \"");
        print_escaped(r.text, r.text_len);
        printf("\"\n");
        CHECK(0, "the detokenized text (%zu bytes) differs from the streamed text (%zu bytes)", len,
              r.text_len);
    }
    /* Exactly len bytes of room: the text without a NUL, and nothing written past it. */
    memset(buf, 'X', len + 1);
    CHECK_OK(cosmoe_detokenize(model, r.ids, r.n, buf, len, &len2), "detokenize into exactly len bytes");
    CHECK(len2 == len && memcmp(buf, r.text, len) == 0 && buf[len] == 'X',
          "detokenize into exactly len bytes wrote something else");
    free(buf);
    ok("detokenize: size query says %zu bytes; text equals the streamed text", len);
    recorder_free(&r);
}

/* Tokenize: size query, too small a buffer, the right buffer. */
static void check_tokenize(const cosmoe_model *model) {
    const char *text = "Hello world";
    size_t text_len = strlen(text);
    size_t n_ids = 0;
    CHECK_STATUS(cosmoe_tokenize(model, text, text_len, false, NULL, 0, &n_ids), COSMOE_ERR_BUFFER_TOO_SMALL,
                 "tokenize size query (NULL ids, capacity 0)");
    CHECK(n_ids > 0, "tokenize size query gave n_ids 0 for \"%s\"", text);
    int32_t *ids = xmalloc(n_ids * sizeof(int32_t));
    size_t got = 0;
    if (n_ids > 1) {
        CHECK_STATUS(cosmoe_tokenize(model, text, text_len, false, ids, n_ids - 1, &got),
                     COSMOE_ERR_BUFFER_TOO_SMALL, "tokenize into n_ids - 1");
        CHECK(got == n_ids, "tokenize into n_ids - 1: *n_ids %zu, expected the needed %zu", got, n_ids);
    }
    CHECK_OK(cosmoe_tokenize(model, text, text_len, false, ids, n_ids, &got), "tokenize");
    CHECK(got == n_ids, "tokenize: %zu ids, the size query said %zu", got, n_ids);
    size_t n_vocab = cosmoe_model_n_vocab(model);
    for (size_t i = 0; i < got; i++)
        CHECK(ids[i] >= 0 && (size_t)ids[i] < n_vocab, "tokenize gave id %" PRId32 " (n_vocab %zu)", ids[i],
              n_vocab);

    /* Round trip: ASCII text without special tokens detokenizes to itself. */
    char buf[64];
    size_t len = 0;
    CHECK_OK(cosmoe_detokenize(model, ids, got, buf, sizeof buf, &len), "detokenize the tokenized text");
    CHECK(len == text_len && memcmp(buf, text, len) == 0, "\"%s\" tokenized and detokenized is \"%.*s\"", text,
          (int)len, buf);
    printf("   \"%s\" -> ", text);
    print_ids(stdout, ids, got);
    printf("\n");
    ok("tokenize \"%s\": size query %zu ids, n_ids - 1 too small, round trip", text, n_ids);
    free(ids);
}

/* Stats of the session that ran check_generation. */
static void check_stats(const cosmoe_session *s) {
    cosmoe_stats st;
    memset(&st, 0xff, sizeof st);
    CHECK_OK(cosmoe_session_stats(s, &st), "cosmoe_session_stats");
    printf("   prompt_tokens %" PRIu64 ", generated_tokens %" PRIu64 "\n", st.prompt_tokens, st.generated_tokens);
    printf("   ttft_ms %.3f, prefill_tok_s %.1f, decode_tok_s %.1f\n", st.ttft_ms, st.prefill_tok_s,
           st.decode_tok_s);
    printf("   latency_p50_ms %.3f, latency_p90_ms %.3f, latency_p99_ms %.3f\n", st.latency_p50_ms,
           st.latency_p90_ms, st.latency_p99_ms);
    printf("   cache_hits %" PRIu64 ", cache_misses %" PRIu64 ", bytes_read %" PRIu64 "\n", st.cache_hits,
           st.cache_misses, st.bytes_read);
    printf("   stall_ms %.3f, exrep %.3f, peak_rss_bytes %" PRIu64 "\n", st.stall_ms, st.exrep,
           st.peak_rss_bytes);
    CHECK(st.prompt_tokens == g_prompt.n, "stats: prompt_tokens %" PRIu64 ", expected %zu", st.prompt_tokens,
          g_prompt.n);
    CHECK(st.generated_tokens == g_expected.n, "stats: generated_tokens %" PRIu64 ", expected %zu",
          st.generated_tokens, g_expected.n);
    CHECK(st.cache_hits + st.cache_misses > 0, "stats: no expert cache hits or misses");
    ok("stats: %" PRIu64 " prompt and %" PRIu64 " generated tokens, %" PRIu64 " expert lookups",
       st.prompt_tokens, st.generated_tokens, st.cache_hits + st.cache_misses);
}

/* Reset empties the context: the same prompt gives the same ids again. */
static void check_reset(cosmoe_session *s) {
    recorder r = {0};
    CHECK_OK(cosmoe_session_reset(s), "reset");
    CHECK(cosmoe_session_n_past(s) == 0, "n_past %zu after reset", cosmoe_session_n_past(s));
    eval_and_generate_expected(s, &r, "eval + generate after reset");
    ok("reset: n_past 0, then the same %zu ids again", g_expected.n);

    /* on_token, n_generated and stop may all be NULL. */
    CHECK_OK(cosmoe_session_reset(s), "reset");
    CHECK_OK(cosmoe_session_eval(s, g_prompt.v, g_prompt.n), "eval");
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();
    CHECK_OK(cosmoe_session_generate(s, &greedy, g_expected.n, NULL, NULL, NULL, NULL),
             "generate with on_token, n_generated and stop NULL");
    size_t n_past = cosmoe_session_n_past(s);
    CHECK(n_past == g_prompt.n + g_expected.n || n_past + 1 == g_prompt.n + g_expected.n,
          "n_past %zu after generating %zu tokens without a callback", n_past, g_expected.n);
    ok("generate without a callback (on_token, n_generated, stop NULL)");
    recorder_free(&r);
}

typedef struct {
    cosmoe_model *model;
    int index;
} worker_args;

enum { WORKER_ROUNDS = 3 };

static void *worker(void *arg) {
    worker_args *a = arg;
    cosmoe_session *s = NULL;
    recorder r = {0};
    char what[96];
    CHECK_OK(cosmoe_session_new(a->model, &s), "cosmoe_session_new in a thread");
    for (int round = 0; round < WORKER_ROUNDS; round++) {
        snprintf(what, sizeof what, "thread %d, round %d", a->index, round + 1);
        if (round > 0) CHECK_OK(cosmoe_session_reset(s), what);
        eval_and_generate_expected(s, &r, what);
    }
    cosmoe_session_free(&s);
    recorder_free(&r);
    return NULL;
}

/* A second model with a small expert cache: one session, then two sessions on two threads. */
static void check_threads(void) {
    cosmoe_model_params params = cosmoe_model_default_params();
    params.expert_cache_pct = 30.0f;
    cosmoe_model *small = NULL;
    CHECK_OK(cosmoe_model_load(g_model_path, &params, &small), "load with expert_cache_pct = 30");
    CHECK(small != NULL, "cosmoe_model_load returned OK but no model");

    cosmoe_session *s = NULL;
    recorder r = {0};
    CHECK_OK(cosmoe_session_new(small, &s), "cosmoe_session_new");
    eval_and_generate_expected(s, &r, "one session, expert cache 30 %");
    cosmoe_stats st;
    CHECK_OK(cosmoe_session_stats(s, &st), "stats");
    cosmoe_session_free(&s);
    recorder_free(&r);
    ok("expert cache 30 %%: the expected ids (%" PRIu64 " hits, %" PRIu64 " misses)", st.cache_hits,
       st.cache_misses);

    pthread_t threads[2];
    worker_args args[2];
    for (int i = 0; i < 2; i++) {
        args[i].model = small;
        args[i].index = i + 1;
        CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 2; i++) CHECK(pthread_join(threads[i], NULL) == 0, "pthread_join");
    cosmoe_model_free(&small);
    CHECK(small == NULL, "cosmoe_model_free did not set the pointer to NULL");
    ok("two sessions on two threads, %d rounds each: the expected ids every time", WORKER_ROUNDS);
}

/* The callback stops the generation. */
static void check_callback_stop(cosmoe_model *model) {
    enum { STOP_AT = 3 };
    CHECK(g_expected.n > STOP_AT, "EXPECTED_IDS needs more than %d ids", STOP_AT);
    cosmoe_session *s = NULL;
    recorder r = {0};
    CHECK_OK(cosmoe_session_new(model, &s), "cosmoe_session_new");
    CHECK_OK(cosmoe_session_eval(s, g_prompt.v, g_prompt.n), "eval");
    recorder_clear(&r, STOP_AT);
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();
    size_t n_generated = (size_t)-1;
    cosmoe_stop stop = (cosmoe_stop)-1;
    CHECK_OK(cosmoe_session_generate(s, &greedy, g_expected.n, record_token, &r, &n_generated, &stop),
             "generate stopped by the callback");
    CHECK(stop == COSMOE_STOP_CALLBACK, "stop reason %s (%d), expected COSMOE_STOP_CALLBACK", stop_name(stop),
          (int)stop);
    CHECK(n_generated == STOP_AT, "n_generated %zu, expected %d", n_generated, STOP_AT);
    CHECK(r.n == STOP_AT, "the callback was called %zu times, expected %d", r.n, STOP_AT);
    CHECK(ids_equal(r.ids, r.n, g_expected.v, STOP_AT), "the first %d ids differ from the expected ones",
          STOP_AT);
    cosmoe_session_free(&s);
    recorder_free(&r);
    ok("the callback returning false at token %d: OK, COSMOE_STOP_CALLBACK, n_generated %d", STOP_AT, STOP_AT);
}

typedef struct {
    cosmoe_session *session;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool first_token;  /* set by the callback on its first call */
    bool cancelled;    /* set by the canceller after cosmoe_session_cancel returned */
    cosmoe_status cancel_status;
    size_t calls;      /* callback calls */
} cancel_ctx;

static void *canceller(void *arg) {
    cancel_ctx *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->first_token) pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
    cosmoe_status st = cosmoe_session_cancel(c->session);
    pthread_mutex_lock(&c->mu);
    c->cancel_status = st;
    c->cancelled = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

enum { CANCEL_WAIT_S = 60 };

/* On the first token: wakes the canceller and waits (at most CANCEL_WAIT_S) until it has cancelled. */
static bool cancel_on_token(int32_t token, const char *text, size_t text_len, void *user_data) {
    (void)token;
    (void)text;
    (void)text_len;
    cancel_ctx *c = user_data;
    c->calls++;
    if (c->calls == 1) {
        struct timespec deadline;
        CHECK(timespec_get(&deadline, TIME_UTC) == TIME_UTC, "timespec_get");
        deadline.tv_sec += CANCEL_WAIT_S;
        pthread_mutex_lock(&c->mu);
        c->first_token = true;
        pthread_cond_broadcast(&c->cv);
        int rc = 0;
        while (!c->cancelled && rc == 0) rc = pthread_cond_timedwait(&c->cv, &c->mu, &deadline);
        bool cancelled = c->cancelled;
        pthread_mutex_unlock(&c->mu);
        CHECK(cancelled,
              "cosmoe_session_cancel from another thread did not return within %d s while generate was running "
              "(does it wait for something the running generate holds?)",
              CANCEL_WAIT_S);
    }
    return true;
}

/* Cancel from another thread; the session stays usable; cancel on an idle session does nothing. */
static void check_cancel(cosmoe_model *model) {
    enum { MAX_TOKENS = 1000 };
    cosmoe_session *s = NULL;
    CHECK_OK(cosmoe_session_new(model, &s), "cosmoe_session_new");
    CHECK_OK(cosmoe_session_eval(s, g_prompt.v, g_prompt.n), "eval");

    cancel_ctx c;
    memset(&c, 0, sizeof c);
    c.session = s;
    c.cancel_status = (cosmoe_status)-1;
    CHECK(pthread_mutex_init(&c.mu, NULL) == 0, "pthread_mutex_init");
    CHECK(pthread_cond_init(&c.cv, NULL) == 0, "pthread_cond_init");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, canceller, &c) == 0, "pthread_create");
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();
    size_t n_generated = (size_t)-1;
    cosmoe_stop stop = (cosmoe_stop)-1;
    cosmoe_status st = cosmoe_session_generate(s, &greedy, MAX_TOKENS, cancel_on_token, &c, &n_generated, &stop);
    /* If the callback never ran (generation failed at once), release the canceller before failing. */
    pthread_mutex_lock(&c.mu);
    c.first_token = true;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    CHECK(pthread_join(t, NULL) == 0, "pthread_join");
    CHECK(c.cancel_status == COSMOE_OK, "cosmoe_session_cancel from another thread: %s",
          status_name(c.cancel_status));
    CHECK(st == COSMOE_ERR_CANCELLED,
          "generate (max_tokens %d) cancelled from another thread: got %s (stop %s after %zu callback calls), "
          "expected COSMOE_ERR_CANCELLED",
          MAX_TOKENS, status_name(st), st == COSMOE_OK ? stop_name(stop) : "-", c.calls);
    CHECK(has_error_message(), "generate returned COSMOE_ERR_CANCELLED with an empty cosmoe_last_error()");
    CHECK(c.calls <= 2, "cancel took effect only after %zu tokens (at most one more than the first expected)",
          c.calls);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    ok("cancel from another thread: COSMOE_ERR_CANCELLED after %zu callback call(s)", c.calls);

    recorder r = {0};
    CHECK_OK(cosmoe_session_reset(s), "reset after cancel");
    eval_and_generate_expected(s, &r, "eval + generate after a cancelled generate");
    ok("the cancelled session is still usable: the expected ids after reset");

    /* Cancel while idle: OK, and it does not cancel the next generate. */
    CHECK_OK(cosmoe_session_reset(s), "reset");
    CHECK_OK(cosmoe_session_eval(s, g_prompt.v, g_prompt.n), "eval");
    CHECK_OK(cosmoe_session_cancel(s), "cancel on an idle session");
    recorder_clear(&r, 0);
    n_generated = (size_t)-1;
    CHECK_OK(cosmoe_session_generate(s, &greedy, g_expected.n, record_token, &r, &n_generated, &stop),
             "generate after a cancel on the idle session");
    CHECK(n_generated == g_expected.n && ids_equal(r.ids, r.n, g_expected.v, g_expected.n),
          "generate after a cancel on the idle session: not the expected ids");
    ok("cancel on an idle session: OK, and the next generate runs to the end");
    cosmoe_session_free(&s);
    recorder_free(&r);
}

/* Misuse returns a status and a message, never crashes. */
static void check_misuse(cosmoe_model *model) {
    cosmoe_model *m = NULL;
    cosmoe_session *s = NULL;
    int32_t ids[4] = {1, 2, 3, 4};
    size_t n = 0;
    char buf[16];
    const float *logits = NULL;
    cosmoe_stats st;
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();

    /* NULL where a pointer goes. */
    CHECK_INVALID(cosmoe_model_load(NULL, NULL, &m), "cosmoe_model_load(path NULL)");
    CHECK(m == NULL, "cosmoe_model_load(path NULL) set *out");
    CHECK_INVALID(cosmoe_model_load(g_model_path, NULL, NULL), "cosmoe_model_load(out NULL)");
    CHECK_INVALID(cosmoe_session_new(NULL, &s), "cosmoe_session_new(model NULL)");
    CHECK(s == NULL, "cosmoe_session_new(model NULL) set *out");
    CHECK_INVALID(cosmoe_session_new(model, NULL), "cosmoe_session_new(out NULL)");
    CHECK_INVALID(cosmoe_tokenize(NULL, "a", 1, false, ids, 4, &n), "cosmoe_tokenize(model NULL)");
    CHECK_INVALID(cosmoe_tokenize(model, NULL, 3, false, ids, 4, &n), "cosmoe_tokenize(text NULL, len 3)");
    CHECK_INVALID(cosmoe_tokenize(model, "a", 1, false, ids, 4, NULL), "cosmoe_tokenize(n_ids NULL)");
    CHECK_INVALID(cosmoe_detokenize(NULL, ids, 1, buf, sizeof buf, &n), "cosmoe_detokenize(model NULL)");
    CHECK_INVALID(cosmoe_detokenize(model, NULL, 2, buf, sizeof buf, &n), "cosmoe_detokenize(ids NULL, n 2)");
    CHECK_INVALID(cosmoe_detokenize(model, ids, 1, buf, sizeof buf, NULL), "cosmoe_detokenize(len NULL)");
    CHECK_INVALID(cosmoe_session_eval(NULL, ids, 1), "cosmoe_session_eval(session NULL)");
    CHECK_INVALID(cosmoe_session_logits(NULL, &logits, &n), "cosmoe_session_logits(session NULL)");
    CHECK_INVALID(cosmoe_session_generate(NULL, &greedy, 1, NULL, NULL, NULL, NULL),
                  "cosmoe_session_generate(session NULL)");
    CHECK_INVALID(cosmoe_session_stats(NULL, &st), "cosmoe_session_stats(session NULL)");
    CHECK_INVALID(cosmoe_session_cancel(NULL), "cosmoe_session_cancel(NULL)");
    CHECK_INVALID(cosmoe_session_reset(NULL), "cosmoe_session_reset(NULL)");
    CHECK(cosmoe_model_n_vocab(NULL) == 0, "cosmoe_model_n_vocab(NULL) is not 0");
    CHECK(cosmoe_session_n_past(NULL) == 0, "cosmoe_session_n_past(NULL) is not 0");

    CHECK_OK(cosmoe_session_new(model, &s), "cosmoe_session_new");
    CHECK_INVALID(cosmoe_session_eval(s, NULL, 2), "cosmoe_session_eval(ids NULL, n 2)");
    CHECK_INVALID(cosmoe_session_logits(s, NULL, &n), "cosmoe_session_logits(logits NULL)");
    CHECK_INVALID(cosmoe_session_stats(s, NULL), "cosmoe_session_stats(out NULL)");
    ok("NULL pointers: COSMOE_ERR_INVALID_ARGUMENT with a message, from every function");

    /* Bad text and bad ids. */
    CHECK_INVALID(cosmoe_tokenize(model, "\xff\xfe", 2, false, ids, 4, &n), "cosmoe_tokenize(invalid UTF-8)");
    size_t n_vocab = cosmoe_model_n_vocab(model);
    int32_t too_big[2] = {1, (int32_t)n_vocab};
    int32_t negative[2] = {1, -1};
    CHECK_INVALID(cosmoe_session_eval(s, too_big, 2), "cosmoe_session_eval(id == n_vocab)");
    CHECK_INVALID(cosmoe_session_eval(s, negative, 2), "cosmoe_session_eval(id -1)");
    CHECK(cosmoe_session_n_past(s) == 0, "a refused eval changed the context: n_past %zu",
          cosmoe_session_n_past(s));
    CHECK_INVALID(cosmoe_detokenize(model, negative + 1, 1, buf, sizeof buf, &n), "cosmoe_detokenize(id -1)");
    ok("invalid UTF-8, id == n_vocab, negative ids: COSMOE_ERR_INVALID_ARGUMENT; the context unchanged");

    /* The session still works after all that. */
    recorder r = {0};
    eval_and_generate_expected(s, &r, "eval + generate after the refused calls");
    recorder_free(&r);

    /* Double free through the ** form, and NULL. */
    cosmoe_session_free(&s);
    CHECK(s == NULL, "cosmoe_session_free did not set the pointer to NULL");
    cosmoe_session_free(&s);
    cosmoe_session_free(NULL);
    CHECK_OK(cosmoe_model_load(g_model_path, NULL, &m), "load");
    cosmoe_model_free(&m);
    CHECK(m == NULL, "cosmoe_model_free did not set the pointer to NULL");
    cosmoe_model_free(&m);
    cosmoe_model_free(NULL);
    ok("double free through the ** form and free(NULL) are no-ops");

    /* A truncated file, a missing file. */
    m = NULL;
    cosmoe_status got = cosmoe_model_load(g_truncated_path, NULL, &m);
    CHECK(got == COSMOE_ERR_FORMAT || got == COSMOE_ERR_IO,
          "loading the truncated model: got %s, expected COSMOE_ERR_FORMAT or COSMOE_ERR_IO", status_name(got));
    CHECK(m == NULL, "loading the truncated model failed but set *out");
    CHECK(has_error_message(), "loading the truncated model: cosmoe_last_error() is empty");
    printf("   truncated model: %s: %s\n", status_name(got), cosmoe_last_error());
    ok("truncated model: %s with a message, no model", status_name(got));
    m = NULL;
    CHECK_STATUS(cosmoe_model_load("/nonexistent/cosmoe/no-such-model.gguf", NULL, &m), COSMOE_ERR_IO,
                 "loading a missing file");
    CHECK(m == NULL, "loading a missing file set *out");
    CHECK(has_error_message(), "loading a missing file: cosmoe_last_error() is empty");
    ok("missing file: COSMOE_ERR_IO with a message");
}

/* The model freed before its session: the session keeps it alive. */
static void check_model_outlived_by_session(void) {
    cosmoe_model *m = NULL;
    cosmoe_session *s = NULL;
    recorder r = {0};
    CHECK_OK(cosmoe_model_load(g_model_path, NULL, &m), "load");
    CHECK_OK(cosmoe_session_new(m, &s), "cosmoe_session_new");
    cosmoe_model_free(&m);
    CHECK(m == NULL, "cosmoe_model_free did not set the pointer to NULL");
    eval_and_generate_expected(s, &r, "eval + generate after the model was freed");
    cosmoe_session_free(&s);
    recorder_free(&r);
    ok("model freed before its session: the session still generates the expected ids");
}

/* Save a session's state mid-generation, load it into a new session: both continue alike. And the
 * logits of every prompt position from cosmoe_session_eval_all. */
static void check_state_and_all_logits(cosmoe_model *model) {
    const size_t first = g_expected.n / 2, rest = g_expected.n - first;
    cosmoe_sampling_params greedy = cosmoe_sampling_default_params();
    cosmoe_session *a = NULL, *b = NULL;
    CHECK_OK(cosmoe_session_new(model, &a), "state: session a");
    CHECK_OK(cosmoe_session_new(model, &b), "state: session b");
    recorder r = {0};
    recorder_clear(&r, 0);
    CHECK_OK(cosmoe_session_eval(a, g_prompt.v, g_prompt.n), "state: eval");
    CHECK_OK(cosmoe_session_generate(a, &greedy, first, record_token, &r, NULL, NULL), "state: generate");

    size_t len = 0;
    CHECK_STATUS(cosmoe_session_state_save(a, NULL, 0, &len), COSMOE_ERR_BUFFER_TOO_SMALL,
                 "state save size query");
    CHECK(len > 0, "state save size query gave 0 bytes");
    uint8_t *state = xmalloc(len);
    size_t len2 = 0;
    CHECK_STATUS(cosmoe_session_state_save(a, state, len - 1, &len2), COSMOE_ERR_BUFFER_TOO_SMALL,
                 "state save into len - 1 bytes");
    CHECK_OK(cosmoe_session_state_save(a, state, len, &len2), "state save");
    CHECK(len2 == len, "state save wrote %zu bytes, the size query said %zu", len2, len);

    CHECK_OK(cosmoe_session_generate(a, &greedy, rest, record_token, &r, NULL, NULL), "state: a goes on");
    CHECK(ids_equal(r.ids, r.n, g_expected.v, g_expected.n), "state: a's ids differ from the expected");

    /* A damaged state is refused and leaves b as it was. */
    CHECK_OK(cosmoe_session_eval(b, g_prompt.v, 2), "state: b holds 2 tokens");
    state[0] ^= 0xff;
    CHECK_INVALID(cosmoe_session_state_load(b, state, len), "loading a damaged state");
    state[0] ^= 0xff;
    CHECK_INVALID(cosmoe_session_state_load(b, state, len - 1), "loading a truncated state");
    CHECK(cosmoe_session_n_past(b) == 2, "a refused state changed the session (n_past %zu)",
          cosmoe_session_n_past(b));

    CHECK_INVALID(cosmoe_session_state_save(NULL, state, len, &len2), "state save with a NULL session");
    CHECK_INVALID(cosmoe_session_state_save(a, state, len, NULL), "state save with a NULL len");
    CHECK_INVALID(cosmoe_session_state_load(NULL, state, len), "state load with a NULL session");
    CHECK_INVALID(cosmoe_session_state_load(b, NULL, len), "state load with a NULL buffer");
    CHECK_OK(cosmoe_session_state_load(b, state, len), "state load");
    CHECK(cosmoe_session_n_past(b) == g_prompt.n + first, "state load: n_past %zu, expected %zu",
          cosmoe_session_n_past(b), g_prompt.n + first);
    recorder rb = {0};
    recorder_clear(&rb, 0);
    CHECK_OK(cosmoe_session_generate(b, &greedy, rest, record_token, &rb, NULL, NULL), "state: b goes on");
    CHECK(ids_equal(rb.ids, rb.n, g_expected.v + first, rest),
          "the session loaded from the state generates other ids than the one that saved it");
    ok("session state: %zu bytes saved after %zu tokens; a new session loaded with it generates the "
       "same %zu ids; damaged and truncated states refused",
       len, first, rest);

    /* Logits of every position: the last row is what cosmoe_session_logits gives. */
    CHECK_OK(cosmoe_session_reset(b), "state: reset b");
    const float *rows = NULL, *last = NULL;
    size_t n_vocab = 0, n_vocab2 = 0;
    CHECK_INVALID(cosmoe_session_eval_all(b, g_prompt.v, g_prompt.n, NULL, &n_vocab), "eval_all, logits NULL");
    CHECK_OK(cosmoe_session_eval_all(b, g_prompt.v, g_prompt.n, &rows, &n_vocab), "eval_all");
    CHECK(n_vocab == cosmoe_model_n_vocab(model), "eval_all: n_vocab %zu", n_vocab);
    CHECK_OK(cosmoe_session_logits(b, &last, &n_vocab2), "logits after eval_all");
    CHECK(memcmp(rows + (g_prompt.n - 1) * n_vocab, last, n_vocab * sizeof(float)) == 0,
          "eval_all's last row differs from cosmoe_session_logits");
    ok("eval_all: %zu rows of %zu logits, the last one cosmoe_session_logits's", g_prompt.n, n_vocab);

    free(state);
    recorder_free(&r);
    recorder_free(&rb);
    cosmoe_session_free(&a);
    cosmoe_session_free(&b);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL TRUNCATED_MODEL PROMPT_IDS EXPECTED_IDS\n", argv[0]);
        return 2;
    }
    g_model_path = argv[1];
    g_truncated_path = argv[2];
    g_prompt = parse_ids(argv[3], "PROMPT_IDS");
    g_expected = parse_ids(argv[4], "EXPECTED_IDS");

    const char *version = cosmoe_version();
    CHECK(version != NULL && version[0] != '\0', "cosmoe_version() is empty");
    ok("cosmoe_version(): %s", version);

    cosmoe_model *model = NULL;
    CHECK_OK(cosmoe_model_load(g_model_path, NULL, &model), "load the model with default params");
    CHECK(model != NULL, "cosmoe_model_load returned OK but no model");
    ok("loaded %s (n_vocab %zu)", g_model_path, cosmoe_model_n_vocab(model));
    cosmoe_session *session = NULL;
    CHECK_OK(cosmoe_session_new(model, &session), "cosmoe_session_new");
    CHECK(session != NULL, "cosmoe_session_new returned OK but no session");

    check_generation(model, session);
    check_tokenize(model);
    check_stats(session);
    check_reset(session);
    check_threads();
    check_callback_stop(model);
    check_cancel(model);
    check_misuse(model);
    check_model_outlived_by_session();
    check_state_and_all_logits(model);

    cosmoe_session_free(&session);
    cosmoe_model_free(&model);
    free(g_prompt.v);
    free(g_expected.v);
    printf("all C API checks passed\n");
    return 0;
}
