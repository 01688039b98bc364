/* SPDX-License-Identifier: MIT */
/*
 * auth.c - keys and tags of authenticated segments.
 *
 * Every MAC here is keyed BLAKE2b with a 32-byte output, over a message
 * whose first byte says what it is (0x00 key id, 0x01 segment header,
 * 0x02 record), so no input of one kind can pass for another. Tags are
 * compared in constant time (sodium_memcmp). Keys are wiped from the
 * stack after use (sodium_memzero).
 */
#include "mirrorfs/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "mirrorfs/io.h"
#include "mirrorfs/macro.h"

#define DOM_KEY_ID 0x00
#define DOM_HEADER 0x01
#define DOM_RECORD 0x02
#define DOM_ENC_KEY 0x03

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

static void init_sodium(void)
{
	init_result = sodium_init() < 0 ? -ENOSYS : 0;
}

int mfs_auth_init(void)
{
	pthread_once(&init_once, init_sodium);
	return init_result;
}

int mfs_auth_key_from_raw(const uint8_t raw[MFS_AUTH_KEY_SIZE], struct mfs_auth_key *ret)
{
	static const uint8_t msg[] = "\0mirrorfs key id";
	uint8_t h[32];
	int r = mfs_auth_init();

	if (r < 0)
		return r;
	memcpy(ret->key, raw, MFS_AUTH_KEY_SIZE);
	crypto_generichash(h, sizeof(h), msg, sizeof(msg) - 1, raw, MFS_AUTH_KEY_SIZE);
	memcpy(ret->id, h, MFS_AUTH_KEY_ID_SIZE);
	return 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse exactly 64 hex digits, then an optional "\n", from buf[0..len). */
static int key_parse(const char *buf, size_t len, uint8_t raw[MFS_AUTH_KEY_SIZE])
{
	if (len == 2 * MFS_AUTH_KEY_SIZE + 1 && buf[len - 1] == '\n')
		len--;
	if (len != 2 * MFS_AUTH_KEY_SIZE)
		return -EBADMSG;
	for (size_t i = 0; i < MFS_AUTH_KEY_SIZE; i++) {
		int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EBADMSG;
		raw[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int mfs_auth_key_load(const char *path, struct mfs_auth_key *ret)
{
	_cleanup_close_ int fd = -EBADF;
	char buf[2 * MFS_AUTH_KEY_SIZE + 2];
	uint8_t raw[MFS_AUTH_KEY_SIZE];
	struct stat st;
	ssize_t n;
	int r;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	if (st.st_mode & 077)
		return -EPERM;
	n = mfs_pread_all(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return (int)n;
	r = key_parse(buf, (size_t)n, raw);
	if (r == 0)
		r = mfs_auth_key_from_raw(raw, ret);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(buf, sizeof(buf));
	return r;
}

int mfs_auth_key_generate(const char *path)
{
	static const char hex[] = "0123456789abcdef";
	_cleanup_close_ int fd = -EBADF;
	uint8_t raw[MFS_AUTH_KEY_SIZE];
	char buf[2 * MFS_AUTH_KEY_SIZE + 1];
	int r = mfs_auth_init();

	if (r < 0)
		return r;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0) /* whatever the umask */
		r = -errno;
	randombytes_buf(raw, sizeof(raw));
	for (size_t i = 0; i < sizeof(raw); i++) {
		buf[2 * i] = hex[raw[i] >> 4];
		buf[2 * i + 1] = hex[raw[i] & 15];
	}
	buf[sizeof(buf) - 1] = '\n';
	if (r == 0)
		r = mfs_pwrite_all(fd, buf, sizeof(buf), 0);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(buf, sizeof(buf));
	if (r < 0)
		(void)unlink(path);
	return r;
}

int mfs_keyring_add_file(struct mfs_keyring *kr, const char *path)
{
	struct mfs_auth_key k;
	int r;

	if (kr->n >= MFS_KEYRING_MAX)
		return -ENOSPC;
	r = mfs_auth_key_load(path, &k);
	if (r < 0)
		return r;
	if (mfs_keyring_find(kr, k.id)) {
		sodium_memzero(&k, sizeof(k));
		return -EEXIST;
	}
	kr->keys[kr->n++] = k;
	sodium_memzero(&k, sizeof(k));
	return 0;
}

int mfs_enc_key_from_raw(const uint8_t raw[MFS_AUTH_KEY_SIZE], struct mfs_auth_key *ret)
{
	static const uint8_t msg[] = "\3mirrorfs encryption key";
	int r = mfs_auth_key_from_raw(raw, ret); /* the key file's id */

	if (r == 0)
		crypto_generichash(ret->key, MFS_AUTH_KEY_SIZE, msg, sizeof(msg) - 1, raw,
				   MFS_AUTH_KEY_SIZE);
	return r;
}

int mfs_keyring_add_enc_file(struct mfs_keyring *kr, const char *path)
{
	struct mfs_auth_key k, e;
	int r;

	if (kr->n_enc >= MFS_KEYRING_MAX)
		return -ENOSPC;
	r = mfs_auth_key_load(path, &k);
	if (r == 0)
		r = mfs_enc_key_from_raw(k.key, &e);
	sodium_memzero(&k, sizeof(k));
	if (r < 0)
		return r;
	if (mfs_keyring_find_enc(kr, e.id)) {
		sodium_memzero(&e, sizeof(e));
		return -EEXIST;
	}
	kr->enc[kr->n_enc++] = e;
	sodium_memzero(&e, sizeof(e));
	return 0;
}

const struct mfs_auth_key *mfs_keyring_find_enc(const struct mfs_keyring *kr,
						const uint8_t id[MFS_AUTH_KEY_ID_SIZE])
{
	for (size_t i = 0; kr && i < kr->n_enc; i++)
		if (memcmp(kr->enc[i].id, id, MFS_AUTH_KEY_ID_SIZE) == 0)
			return &kr->enc[i];
	return NULL;
}

/* Associated data of a sealed payload: record header bytes 0..27, data-set id. */
static void enc_ad(const uint8_t head28[28], const uint8_t uuid[16], uint8_t ad[44])
{
	memcpy(ad, head28, 28);
	memcpy(ad + 28, uuid, 16);
}

void mfs_enc_seal(const struct mfs_auth_key *k, const uint8_t *nonce, const uint8_t head28[28],
		  const uint8_t uuid[16], const void *m, size_t mlen, uint8_t *out)
{
	uint8_t ad[44];

	if (nonce && nonce != out)
		memcpy(out, nonce, MFS_ENC_NONCE_SIZE);
	else
		randombytes_buf(out, MFS_ENC_NONCE_SIZE);
	enc_ad(head28, uuid, ad);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + MFS_ENC_NONCE_SIZE, NULL, m, mlen, ad,
						   sizeof(ad), NULL, out, k->key);
}

int mfs_enc_open(const struct mfs_auth_key *k, const uint8_t head28[28], const uint8_t uuid[16],
		 const uint8_t *c, size_t clen, uint8_t *out)
{
	uint8_t ad[44];

	if (clen < MFS_ENC_OVERHEAD)
		return -EBADMSG;
	enc_ad(head28, uuid, ad);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, NULL, NULL, c + MFS_ENC_NONCE_SIZE,
						       clen - MFS_ENC_NONCE_SIZE, ad, sizeof(ad),
						       c, k->key) < 0)
		return -EBADMSG;
	return 0;
}

void mfs_auth_tag_format(const uint8_t tag[MFS_AUTH_TAG_SIZE], char out[65])
{
	for (size_t i = 0; i < MFS_AUTH_TAG_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", tag[i]);
}

int mfs_auth_tag_parse(const char *s, uint8_t ret[MFS_AUTH_TAG_SIZE])
{
	uint8_t t[MFS_AUTH_TAG_SIZE];

	if (strlen(s) != 2 * MFS_AUTH_TAG_SIZE)
		return -EBADMSG;
	for (size_t i = 0; i < MFS_AUTH_TAG_SIZE; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EBADMSG;
		t[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(ret, t, MFS_AUTH_TAG_SIZE);
	return 0;
}

const char *mfs_auth_key_error(int r)
{
	switch (r) {
	case -EPERM:
		return "group or others may access it (it must be mode 0600)";
	case -EBADMSG:
		return "not a key file (64 hex digits, as mirrorctl keygen writes)";
	case -EEXIST:
		return "the same key is given twice";
	case -ENOSPC:
		return "too many keys (at most 4)";
	default:
		return strerror(-r);
	}
}

const struct mfs_auth_key *mfs_keyring_find(const struct mfs_keyring *kr,
					    const uint8_t id[MFS_AUTH_KEY_ID_SIZE])
{
	for (size_t i = 0; kr && i < kr->n; i++)
		if (memcmp(kr->keys[i].id, id, MFS_AUTH_KEY_ID_SIZE) == 0)
			return &kr->keys[i];
	return NULL;
}

void mfs_auth_seed(const struct mfs_auth_key *k, const uint8_t hdr[124],
		   uint8_t ret[MFS_AUTH_TAG_SIZE])
{
	crypto_generichash_state st;
	const uint8_t dom = DOM_HEADER;

	crypto_generichash_init(&st, k->key, MFS_AUTH_KEY_SIZE, MFS_AUTH_TAG_SIZE);
	crypto_generichash_update(&st, &dom, 1);
	crypto_generichash_update(&st, hdr, 124);
	crypto_generichash_final(&st, ret, MFS_AUTH_TAG_SIZE);
}

void mfs_auth_tag(const struct mfs_auth_key *k, const uint8_t chain[MFS_AUTH_TAG_SIZE],
		  const uint8_t rec_head28[28], const struct mfs_auth_piece *pieces, size_t npieces,
		  uint8_t ret[MFS_AUTH_TAG_SIZE])
{
	crypto_generichash_state st;
	const uint8_t dom = DOM_RECORD;

	crypto_generichash_init(&st, k->key, MFS_AUTH_KEY_SIZE, MFS_AUTH_TAG_SIZE);
	crypto_generichash_update(&st, &dom, 1);
	crypto_generichash_update(&st, chain, MFS_AUTH_TAG_SIZE);
	crypto_generichash_update(&st, rec_head28, 28);
	for (size_t i = 0; i < npieces; i++)
		if (pieces[i].n)
			crypto_generichash_update(&st, pieces[i].p, pieces[i].n);
	crypto_generichash_final(&st, ret, MFS_AUTH_TAG_SIZE);
}

bool mfs_auth_tag_equal(const uint8_t a[MFS_AUTH_TAG_SIZE], const uint8_t b[MFS_AUTH_TAG_SIZE])
{
	return sodium_memcmp(a, b, MFS_AUTH_TAG_SIZE) == 0;
}

void mfs_auth_id_format(const uint8_t id[MFS_AUTH_KEY_ID_SIZE], char out[17])
{
	for (size_t i = 0; i < MFS_AUTH_KEY_ID_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}
