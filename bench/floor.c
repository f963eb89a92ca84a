/* The floor: TLS 1.3 handshakes for QUIC through GnuTLS's QUIC API, in memory, in C.
 *
 * Same shape as quichsd's engine (quichsd/tls/engine.py): read/secret/alert callbacks,
 * gnutls_handshake_write per received message then gnutls_handshake, extension 0x39,
 * server NO_AUTO_SEND_TICKET + ticket sent on the application rx secret, early data
 * enabled with an anti-replay context, client SNI + certificate verification, ALPN.
 * Credentials and priorities are loaded once; gnutls_init/deinit per handshake.
 * Each side's CPU time is measured with CLOCK_THREAD_CPUTIME_ID around its own calls.
 *
 * usage: floor CERT KEY CA SERVER_PRIO CLIENT_PRIO MODE N [ALPN]
 *   MODE full    N full handshakes (the client takes the server's ticket)
 *   MODE resume  one full handshake for a ticket, then N resumptions with it
 *   MODE mem     RSS delta of N server sessions held after their ClientHello
 * Output: one JSON object on stdout.
 */
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <time.h>

#define MAXMSG 64
#define SERVER_NAME "server.test"

struct msg {
	int level;
	size_t len;
	unsigned char *data;
};

struct side {
	gnutls_session_t s;
	int is_server;
	int done;
	int app_rx;
	int got_tp;
	int nsecrets;
	unsigned char secrets[8][48];
	struct side *peer;
	struct msg inbox[MAXMSG];
	int nin;
	gnutls_datum_t session_data;
	long long cpu_ns;
};

static gnutls_certificate_credentials_t server_creds, client_creds;
static gnutls_priority_t server_prio, client_prio;
static gnutls_anti_replay_t anti_replay;
static gnutls_datum_t ticket_key;
static gnutls_datum_t alpn;
static const unsigned char tp[] = "memory-tp";

static void die(const char *what, int ret)
{
	fprintf(stderr, "floor: %s: %s\n", what, gnutls_strerror(ret));
	exit(1);
}

#define CHECK(call, what) do { int r_ = (call); if (r_ < 0) die(what, r_); } while (0)

static long long now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int on_read(gnutls_session_t s, gnutls_record_encryption_level_t level,
		   gnutls_handshake_description_t htype, const void *data, size_t len)
{
	struct side *me = gnutls_session_get_ptr(s);
	struct side *p = me->peer;
	if (htype == GNUTLS_HANDSHAKE_KEY_UPDATE)
		return 0;
	if (p->nin == MAXMSG)
		return GNUTLS_E_INTERNAL_ERROR;
	struct msg *m = &p->inbox[p->nin++];
	m->level = level;
	m->len = len;
	m->data = malloc(len);
	memcpy(m->data, data, len);
	return 0;
}

static int on_secret(gnutls_session_t s, gnutls_record_encryption_level_t level,
		     const void *rx, const void *tx, size_t size)
{
	struct side *me = gnutls_session_get_ptr(s);
	if (me->done || size > 48)
		return me->done ? 0 : GNUTLS_E_INTERNAL_ERROR;
	gnutls_cipher_algorithm_t c = level == GNUTLS_ENCRYPTION_LEVEL_EARLY
					      ? gnutls_early_cipher_get(s)
					      : gnutls_cipher_get(s);
	if (c == GNUTLS_CIPHER_UNKNOWN)
		return GNUTLS_E_INTERNAL_ERROR;
	if (level == GNUTLS_ENCRYPTION_LEVEL_APPLICATION && rx && !me->got_tp)
		return GNUTLS_E_INTERNAL_ERROR;
	/* the "kernel" takes a copy of each secret (setsockopt CRYPTO_SECRET) */
	if (tx && me->nsecrets < 8)
		memcpy(me->secrets[me->nsecrets++], tx, size);
	if (rx && me->nsecrets < 8)
		memcpy(me->secrets[me->nsecrets++], rx, size);
	if (level == GNUTLS_ENCRYPTION_LEVEL_APPLICATION && rx) {
		me->app_rx = 1;
		if (me->is_server) {
			int r = gnutls_session_ticket_send(s, 1, 0);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int on_alert(gnutls_session_t s, gnutls_record_encryption_level_t level,
		    gnutls_alert_level_t al, gnutls_alert_description_t desc)
{
	(void)s; (void)level; (void)al;
	fprintf(stderr, "floor: alert %d\n", (int)desc);
	return 0;
}

static int tp_recv(gnutls_session_t s, const unsigned char *data, size_t len)
{
	struct side *me = gnutls_session_get_ptr(s);
	(void)data; (void)len;
	me->got_tp = 1;
	return 0;
}

static int tp_send(gnutls_session_t s, gnutls_buffer_t buf)
{
	(void)s;
	return gnutls_buffer_append_data(buf, tp, sizeof(tp) - 1);
}

static int on_client_hello(gnutls_session_t s, unsigned htype, unsigned when,
			   unsigned incoming, const gnutls_datum_t *msg)
{
	struct side *me = gnutls_session_get_ptr(s);
	gnutls_datum_t sel;
	(void)htype; (void)when; (void)incoming; (void)msg;
	if (!me->got_tp)
		return GNUTLS_E_INTERNAL_ERROR;
	gnutls_alpn_get_selected_protocol(s, &sel);
	return 0;
}

static int replay_add(void *ptr, time_t exp, const gnutls_datum_t *key, const gnutls_datum_t *d)
{
	(void)ptr; (void)exp; (void)key; (void)d;
	return 0;
}

static void setup(struct side *sd, int server, const gnutls_datum_t *resume)
{
	gnutls_session_t s;
	unsigned flags = GNUTLS_NO_END_OF_EARLY_DATA | GNUTLS_ENABLE_EARLY_DATA;
	flags |= server ? GNUTLS_SERVER | GNUTLS_NO_AUTO_SEND_TICKET : GNUTLS_CLIENT;
	CHECK(gnutls_init(&s, flags), "gnutls_init");
	sd->s = s;
	gnutls_session_set_ptr(s, sd);
	CHECK(gnutls_priority_set(s, server ? server_prio : client_prio), "priority_set");
	CHECK(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, server ? server_creds : client_creds),
	      "credentials_set");
	CHECK(gnutls_alpn_set_protocols(s, &alpn, 1, GNUTLS_ALPN_MANDATORY), "alpn");
	gnutls_handshake_set_read_function(s, on_read);
	gnutls_handshake_set_secret_function(s, on_secret);
	gnutls_alert_set_read_function(s, on_alert);
	CHECK(gnutls_session_ext_register(s, "QUIC Transport Parameters", 0x39, GNUTLS_EXT_TLS,
					  tp_recv, tp_send, NULL, NULL, NULL,
					  GNUTLS_EXT_FLAG_TLS | GNUTLS_EXT_FLAG_CLIENT_HELLO |
						  GNUTLS_EXT_FLAG_EE),
	      "ext_register");
	if (server) {
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
		CHECK(gnutls_session_ticket_enable_server(s, &ticket_key), "ticket_enable");
		CHECK(gnutls_record_set_max_early_data_size(s, 0xffffffff), "max_early_data");
		gnutls_anti_replay_enable(s, anti_replay);
		gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO,
						   GNUTLS_HOOK_POST, on_client_hello);
	} else {
		CHECK(gnutls_server_name_set(s, GNUTLS_NAME_DNS, SERVER_NAME, strlen(SERVER_NAME)),
		      "sni");
		gnutls_session_set_verify_cert(s, SERVER_NAME, 0);
		if (resume)
			CHECK(gnutls_session_set_data(s, resume->data, resume->size), "set_data");
	}
}

static void step(struct side *sd)
{
	int r = gnutls_handshake(sd->s);
	if (r == 0)
		sd->done = 1;
	else if (gnutls_error_is_fatal(r))
		die(sd->is_server ? "server handshake" : "client handshake", r);
}

/* deliver everything queued for sd; returns whether anything was delivered */
static int pump(struct side *sd)
{
	if (!sd->nin)
		return 0;
	long long t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	for (int i = 0; i < sd->nin; i++) {
		struct msg *m = &sd->inbox[i];
		int r = gnutls_handshake_write(sd->s, m->level, m->data, m->len);
		if (r < 0 && gnutls_error_is_fatal(r))
			die("handshake_write", r);
		free(m->data);
		if (!sd->done) {
			step(sd);
		} else if (!sd->is_server && m->level == GNUTLS_ENCRYPTION_LEVEL_APPLICATION) {
			if (sd->session_data.data)
				gnutls_free(sd->session_data.data);
			CHECK(gnutls_session_get_data2(sd->s, &sd->session_data), "get_data2");
		}
	}
	sd->nin = 0;
	sd->cpu_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	return 1;
}

/* one handshake; returns 1 if resumed */
static int handshake(const gnutls_datum_t *resume, long long *srv_ns, long long *cli_ns,
		     gnutls_datum_t *out_data)
{
	struct side c, sv;
	memset(&c, 0, sizeof c);
	memset(&sv, 0, sizeof sv);
	c.peer = &sv;
	sv.peer = &c;
	sv.is_server = 1;
	long long t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	setup(&c, 0, resume);
	step(&c); /* ClientHello */
	c.cpu_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	setup(&sv, 1, NULL);
	sv.cpu_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	while (pump(&sv) | pump(&c))
		;
	if (!c.done || !sv.done || !c.session_data.data) {
		fprintf(stderr, "floor: handshake did not complete (c=%d s=%d ticket=%d)\n", c.done,
			sv.done, c.session_data.data != NULL);
		exit(1);
	}
	int resumed = gnutls_session_is_resumed(c.s) && gnutls_session_is_resumed(sv.s);
	t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	gnutls_deinit(sv.s);
	sv.cpu_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	t0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
	gnutls_deinit(c.s);
	c.cpu_ns += now_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
	if (out_data && !out_data->data)
		*out_data = c.session_data;
	else
		gnutls_free(c.session_data.data);
	*srv_ns = sv.cpu_ns;
	*cli_ns = c.cpu_ns;
	return resumed;
}

static long rss_kb(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f || fscanf(f, "%ld %ld", &pages, &rss) != 2)
		exit(1);
	fclose(f);
	return rss * 4;
}

/* RSS per in-flight server handshake: N server sessions held after answering a
 * ClientHello (waiting for the client's Finished). The ClientHellos are made first and
 * the client sessions freed and trimmed, so their memory is not reused by the servers. */
static void mem_mode(int n)
{
	struct side *sv = calloc(n, sizeof *sv);
	struct side sink;
	memset(&sink, 0, sizeof sink);
	for (int i = 0; i < n; i++) {
		struct side c;
		memset(&c, 0, sizeof c);
		c.peer = &sv[i];
		setup(&c, 0, NULL);
		step(&c); /* the ClientHello lands in sv[i].inbox */
		gnutls_deinit(c.s);
	}
	malloc_trim(0);
	long before = rss_kb();
	for (int i = 0; i < n; i++) {
		sv[i].peer = &sink;
		sv[i].is_server = 1;
		setup(&sv[i], 1, NULL);
		pump(&sv[i]);
		for (int j = 0; j < sink.nin; j++)
			free(sink.inbox[j].data);
		sink.nin = 0;
	}
	long after = rss_kb();
	printf("{\"mode\":\"mem\",\"n\":%d,\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,"
	       "\"per_handshake_bytes\":%.0f}\n",
	       n, before, after, (after - before) * 1024.0 / n);
}

int main(int argc, char **argv)
{
	if (argc < 8) {
		fprintf(stderr, "usage: floor CERT KEY CA SERVER_PRIO CLIENT_PRIO full|resume|mem N [ALPN]\n");
		return 2;
	}
	const char *mode = argv[6];
	int n = atoi(argv[7]);
	const char *a = argc > 8 ? argv[8] : "smb";
	alpn.data = (unsigned char *)a;
	alpn.size = strlen(a);
	const char *err = NULL;
	long rss0 = rss_kb();
	CHECK(gnutls_certificate_allocate_credentials(&server_creds), "alloc creds");
	CHECK(gnutls_certificate_set_x509_key_file(server_creds, argv[1], argv[2],
						   GNUTLS_X509_FMT_PEM), "server key pair");
	CHECK(gnutls_certificate_allocate_credentials(&client_creds), "alloc creds");
	CHECK(gnutls_certificate_set_x509_trust_file(client_creds, argv[3], GNUTLS_X509_FMT_PEM),
	      "trust");
	if (gnutls_priority_init2(&server_prio, argv[4], &err, 0) < 0 ||
	    gnutls_priority_init2(&client_prio, argv[5], &err, 0) < 0) {
		fprintf(stderr, "floor: bad priority string at %s\n", err ? err : "?");
		return 1;
	}
	CHECK(gnutls_anti_replay_init(&anti_replay), "anti_replay");
	gnutls_anti_replay_set_add_function(anti_replay, replay_add);
	CHECK(gnutls_session_ticket_key_generate(&ticket_key), "ticket key");
	long rss_idle = rss_kb();

	if (!strcmp(mode, "mem")) {
		mem_mode(n);
		return 0;
	}
	int resume = !strcmp(mode, "resume");
	gnutls_datum_t data = {NULL, 0};
	long long s_ns, c_ns;
	if (resume) /* warm-up handshake that yields the ticket */
		handshake(NULL, &s_ns, &c_ns, &data);
	else
		handshake(NULL, &s_ns, &c_ns, NULL); /* warm-up */
	long long *ss = malloc(n * sizeof *ss), *cc = malloc(n * sizeof *cc);
	int resumed = 0;
	long long w0 = now_ns(CLOCK_MONOTONIC), p0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (int i = 0; i < n; i++)
		resumed += handshake(resume ? &data : NULL, &ss[i], &cc[i], NULL);
	long long wall = now_ns(CLOCK_MONOTONIC) - w0;
	long long proc = now_ns(CLOCK_PROCESS_CPUTIME_ID) - p0;
	printf("{\"mode\":\"%s\",\"n\":%d,\"resumed\":%d,\"wall_ns\":%lld,\"process_cpu_ns\":%lld,"
	       "\"rss_start_kb\":%ld,\"rss_idle_kb\":%ld,\"server_ns\":[",
	       mode, n, resumed, wall, proc, rss0, rss_idle);
	for (int i = 0; i < n; i++)
		printf("%s%lld", i ? "," : "", ss[i]);
	printf("],\"client_ns\":[");
	for (int i = 0; i < n; i++)
		printf("%s%lld", i ? "," : "", cc[i]);
	printf("]}\n");
	return 0;
}
