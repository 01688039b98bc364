/* SPDX-License-Identifier: MIT */
/*
 * s3follow.h - mirrord --incoming s3://BUCKET/PREFIX/ (s3follow.c).
 */
#pragma once

#include <stdint.h>

struct mirror_s3;

/* A follower of @url (endpoint from AWS_ENDPOINT_URL unless @endpoint)
 * that downloads into the local folder @incoming; @state_fd is the state
 * folder (its applied LSN). Returns 0, or <0 after a message. */
int mirror_s3_new(const char *url, const char *endpoint, const char *incoming, int state_fd,
		  struct mirror_s3 **ret);
struct mirror_s3 *mirror_s3_free(struct mirror_s3 *f);

/* One poll: one LIST after the last key fetched, then the downloads.
 * Returns the number of segments fetched, or <0 after a message. */
int mirror_s3_poll(struct mirror_s3 *f);
