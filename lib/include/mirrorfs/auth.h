/* SPDX-License-Identifier: MIT */
/*
 * auth.h - keys and tags of authenticated segments (format version 2).
 *
 * A key is 256 random bits shared by a primary and its mirrors. Its key id
 * (8 bytes, derived from the key, public) names it in a segment header, so
 * that a reader holding two keys during a rotation picks the right one.
 * Tags are keyed BLAKE2b-256 (libsodium crypto_generichash), chained: each
 * record's tag covers the tag before it (see docs/journal-format.md).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MFS_AUTH_KEY_SIZE 32u
#define MFS_AUTH_KEY_ID_SIZE 8u
#define MFS_AUTH_TAG_SIZE 32u
#define MFS_KEYRING_MAX 4u

struct mfs_auth_key {
	uint8_t key[MFS_AUTH_KEY_SIZE];
	uint8_t id[MFS_AUTH_KEY_ID_SIZE];
};

/*
 * Keys a reader accepts (two while a key is being replaced): @keys tag
 * segments (auth_key), @enc decrypt them (encrypt_key; each holds the
 * derived encryption key and the id of the key file it came from).
 */
struct mfs_keyring {
	size_t n;
	struct mfs_auth_key keys[MFS_KEYRING_MAX];
	size_t n_enc;
	struct mfs_auth_key enc[MFS_KEYRING_MAX];
};

/* Initialise libsodium once. Returns 0, or -ENOSYS if it cannot start. */
int mfs_auth_init(void);

/* Set up @ret from 32 raw key bytes (computes the key id). */
int mfs_auth_key_from_raw(const uint8_t raw[MFS_AUTH_KEY_SIZE], struct mfs_auth_key *ret);

/*
 * Load a key file: 64 hex digits and an optional newline, nothing else.
 * Returns 0, -EBADMSG if the file is not a key, -EPERM if group or others
 * may read or write it (a key file must be mode 0600 or stricter),
 * -errno if it cannot be read.
 */
int mfs_auth_key_load(const char *path, struct mfs_auth_key *ret);

/*
 * Write a new random key to @path (created with O_EXCL, mode 0600, synced).
 * Returns 0, -EEXIST if @path exists, -errno.
 */
int mfs_auth_key_generate(const char *path);

/* Add @path's key to @kr. Returns 0, -ENOSPC if full, -EEXIST if it holds
 * that key already, or mfs_auth_key_load()'s errors. */
int mfs_keyring_add_file(struct mfs_keyring *kr, const char *path);

/* Why mfs_keyring_add_file() / mfs_auth_key_load() failed with @r, in words. */
const char *mfs_auth_key_error(int r);

/* The key of @kr with id @id, or NULL. */
const struct mfs_auth_key *mfs_keyring_find(const struct mfs_keyring *kr,
					    const uint8_t id[MFS_AUTH_KEY_ID_SIZE]);

/* The seed of a segment's chain: the MAC of header bytes 0..123. */
void mfs_auth_seed(const struct mfs_auth_key *k, const uint8_t hdr[124],
		   uint8_t ret[MFS_AUTH_TAG_SIZE]);

/*
 * Tag of one record: the MAC of 0x02, @chain (the tag before), the
 * record's bytes 0..27 and @npieces pieces of its bytes from 32 up to its
 * tag (payload, possibly in several buffers).
 */
struct mfs_auth_piece {
	const void *p;
	size_t n;
};
void mfs_auth_tag(const struct mfs_auth_key *k, const uint8_t chain[MFS_AUTH_TAG_SIZE],
		  const uint8_t rec_head28[28], const struct mfs_auth_piece *pieces, size_t npieces,
		  uint8_t ret[MFS_AUTH_TAG_SIZE]);

/* Constant-time comparison of two tags. */
bool mfs_auth_tag_equal(const uint8_t a[MFS_AUTH_TAG_SIZE], const uint8_t b[MFS_AUTH_TAG_SIZE]);

/* Add @path's key to @kr as an encryption key (mfs_keyring_add_file's errors). */
int mfs_keyring_add_enc_file(struct mfs_keyring *kr, const char *path);

/* The encryption key of @kr whose key file has id @id, or NULL. */
const struct mfs_auth_key *mfs_keyring_find_enc(const struct mfs_keyring *kr,
						const uint8_t id[MFS_AUTH_KEY_ID_SIZE]);

/*
 * Encryption of a record's payload (format 2, MFS_REC_F_ENC): XChaCha20-
 * Poly1305 (IETF AEAD, libsodium) under the key derived from the key file
 * (BLAKE2b-256(file key, 03 "mirrorfs encryption key")), with a random
 * 24-byte nonce per record and, as associated data, the record's header
 * bytes 0..27 and the data-set id. Sealed form: nonce | ciphertext | MAC
 * (MFS_ENC_OVERHEAD bytes more than the plaintext).
 */
#define MFS_ENC_NONCE_SIZE 24u
#define MFS_ENC_MAC_SIZE 16u
#define MFS_ENC_OVERHEAD (MFS_ENC_NONCE_SIZE + MFS_ENC_MAC_SIZE)
/* Set up @ret from the raw bytes of a key file (derived key, file's key id). */
int mfs_enc_key_from_raw(const uint8_t raw[MFS_AUTH_KEY_SIZE], struct mfs_auth_key *ret);
/* Seal @m[0..@mlen) into @out (mlen + MFS_ENC_OVERHEAD bytes). @nonce: NULL
 * for a random one (a fixed one only in tests). */
void mfs_enc_seal(const struct mfs_auth_key *k, const uint8_t *nonce, const uint8_t head28[28],
		  const uint8_t uuid[16], const void *m, size_t mlen, uint8_t *out);
/* Open sealed @c[0..@clen) into @out (clen - MFS_ENC_OVERHEAD bytes).
 * Returns 0, -EBADMSG if it is too short or does not verify. */
int mfs_enc_open(const struct mfs_auth_key *k, const uint8_t head28[28], const uint8_t uuid[16],
		 const uint8_t *c, size_t clen, uint8_t *out);

/* Hex of a tag (64 digits + NUL), and back (-EBADMSG unless exactly 64 hex digits). */
void mfs_auth_tag_format(const uint8_t tag[MFS_AUTH_TAG_SIZE], char out[65]);
int mfs_auth_tag_parse(const char *s, uint8_t ret[MFS_AUTH_TAG_SIZE]);

/* Hex of a key id (16 digits + NUL). */
void mfs_auth_id_format(const uint8_t id[MFS_AUTH_KEY_ID_SIZE], char out[17]);
