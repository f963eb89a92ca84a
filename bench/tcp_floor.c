/* The C floor for one TCP TLS 1.3 PSK handshake (both sides), for bench/tcp.py.
 *
 * usage: tcp_floor N PRIORITY   -> prints "cpu_us_per_handshake <float>"
 * Per handshake: a non-blocking socketpair(AF_UNIX, SOCK_STREAM) (the kernel's TCP cost
 * is not the agent's), client and server sessions in this one thread, gnutls_handshake
 * on each in turn until both complete (GNUTLS_E_AGAIN otherwise), a 32-byte external
 * PSK (gnutls_transport_set_int), then gnutls_record_get_state for both directions (what
 * the kTLS hand-over reads); no kTLS install. CPU: getrusage over N handshakes. */
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

static unsigned char KEY[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
static gnutls_priority_t prio;

static int server_cb(gnutls_session_t s, const char *user, gnutls_datum_t *key)
{
	(void)s; (void)user;
	key->data = gnutls_malloc(32);
	memcpy(key->data, KEY, 32);
	key->size = 32;
	return 0;
}

static void get_state(gnutls_session_t s)
{
	gnutls_datum_t mac, iv, ck;
	unsigned char seq[8];
	if (gnutls_record_get_state(s, 0, &mac, &iv, &ck, seq) < 0 ||
	    gnutls_record_get_state(s, 1, &mac, &iv, &ck, seq) < 0)
		exit(3);
}

struct side {
	gnutls_session_t s;
	gnutls_psk_client_credentials_t cc;
	gnutls_psk_server_credentials_t sc;
	int done;
};

static void side_init(struct side *x, int fd, int server)
{
	gnutls_datum_t k = {KEY, 32};
	memset(x, 0, sizeof(*x));
	gnutls_init(&x->s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS);
	gnutls_priority_set(x->s, prio);
	if (server) {
		gnutls_psk_allocate_server_credentials(&x->sc);
		gnutls_psk_set_server_credentials_function(x->sc, server_cb);
		gnutls_credentials_set(x->s, GNUTLS_CRD_PSK, x->sc);
	} else {
		gnutls_psk_allocate_client_credentials(&x->cc);
		gnutls_psk_set_client_credentials(x->cc, "NVMe1R01 host sub", &k, GNUTLS_PSK_KEY_RAW);
		gnutls_credentials_set(x->s, GNUTLS_CRD_PSK, x->cc);
	}
	gnutls_transport_set_int(x->s, fd);
}

static void side_step(struct side *x)
{
	int ret;
	if (x->done)
		return;
	ret = gnutls_handshake(x->s);
	if (ret == 0) {
		get_state(x->s);
		x->done = 1;
	} else if (gnutls_error_is_fatal(ret)) {
		fprintf(stderr, "handshake: %s\n", gnutls_strerror(ret));
		exit(2);
	}
}

static void side_free(struct side *x)
{
	gnutls_deinit(x->s);
	if (x->cc) gnutls_psk_free_client_credentials(x->cc);
	if (x->sc) gnutls_psk_free_server_credentials(x->sc);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200, i;
	struct rusage ru;
	if (gnutls_priority_init(&prio, argc > 2 ? argv[2] : NULL, NULL) < 0)
		return 1;
	for (i = 0; i < n; i++) {
		int sv[2];
		struct side c, s;
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		fcntl(sv[0], F_SETFL, O_NONBLOCK);
		fcntl(sv[1], F_SETFL, O_NONBLOCK);
		side_init(&c, sv[0], 0);
		side_init(&s, sv[1], 1);
		while (!c.done || !s.done) {
			side_step(&c);
			side_step(&s);
		}
		side_free(&c);
		side_free(&s);
		close(sv[0]);
		close(sv[1]);
	}
	getrusage(RUSAGE_SELF, &ru);
	printf("cpu_us_per_handshake %.1f\n",
	       ((ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
		ru.ru_stime.tv_usec) / n);
	return 0;
}
