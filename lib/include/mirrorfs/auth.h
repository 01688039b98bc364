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

/* Keys a reader accepts (two while a key is being replaced). */
struct mfs_keyring {
	size_t n;
	struct mfs_auth_key keys[MFS_KEYRING_MAX];
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

/* Hex of a key id (16 digits + NUL). */
void mfs_auth_id_format(const uint8_t id[MFS_AUTH_KEY_ID_SIZE], char out[17]);
