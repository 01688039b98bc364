/* SPDX-License-Identifier: MIT */
/*
 * killpriv.c - FUSE_HANDLE_KILLPRIV_V2 under libfuse 3.14, which cannot
 * negotiate it.
 *
 * Without it the kernel asks for security.capability (a GETXATTR round
 * trip) before every write to a regular file, since FUSE marks no inode
 * S_NOSEC: one request in three of a 4 KiB write + fdatasync and of a
 * PostgreSQL commit (tests/bench/opcount ... time, PG_PIPE_FUSE=1
 * tests/bench/pg-pipe-cost). With it the kernel sets SB_NOSEC and asks
 * once per inode (again after a change of a security.* attribute or of
 * the setid bits), and it leaves the killing of suid and sgid to the file
 * system: on a write, a truncate or an open with O_TRUNC by a caller
 * without CAP_FSETID, and on a chown, it sets a flag in the request,
 * which libfuse 3.14 drops.
 *
 * So mirrorfs reads and writes /dev/fuse through fuse_session_custom_io():
 * the read hook notes, for the thread, whether the request it just read
 * carries that flag (libfuse handles a request on the thread that read
 * it, before it reads the next); the write hook adds the capability to
 * the INIT reply when the kernel offered it. Handlers ask
 * fs_killpriv_asked() and clear the bits with a journaled mode change
 * (attr.c fs_attr_kill_suidgid()) before their own change, as the
 * kernel's VFS would. Capabilities stay the kernel's: it still removes
 * security.capability (a journaled REMOVEXATTR) when it finds one.
 * Two requests carry no such flag. copy_file_range and fallocate: data.c
 * kills the bits there when the caller is not root. chown(f, -1, -1),
 * which kills them on any file system, reaches us as a SETATTR that sets
 * nothing: taken as a kill (so is the one a write by root sends after
 * removing a capability of a setuid file, which then loses the bit).
 */
#include "fs.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "mirrorfs/log.h"

static _Thread_local bool asked; /* the request this thread handles asks for a kill */
static atomic_bool offered;	 /* the kernel offered FUSE_HANDLE_KILLPRIV_V2 */
static _Atomic uint64_t init_unique;
static atomic_bool enabled;

/* Copy the request's argument (@alen bytes at @arg) into @out, @size
 * bytes of it; false if it is shorter. */
static bool arg_of(const char *arg, size_t alen, void *out, size_t size)
{
	if (alen < size)
		return false;
	memcpy(out, arg, size);
	return true;
}

/* What the request in @buf (@len bytes read) asks: does it carry a kill
 * of suid/sgid? Notes the INIT's offer too. */
static bool parse(const void *buf, size_t len)
{
	const struct fuse_in_header *h = buf;
	const char *arg = (const char *)buf + sizeof(*h);
	struct fuse_init_in init;
	struct fuse_write_in w;
	struct fuse_setattr_in sa;
	struct fuse_open_in o;
	struct fuse_create_in c;
	size_t alen;

	if (len < sizeof(*h) || h->len > len)
		return false;
	alen = h->len - sizeof(*h);
	if (h->opcode == FUSE_INIT) {
		if (arg_of(arg, alen, &init, offsetof(struct fuse_init_in, flags) + sizeof(init.flags))) {
			atomic_store(&init_unique, h->unique);
			atomic_store(&offered, init.major == FUSE_KERNEL_VERSION && init.minor >= 33 &&
						       (init.flags & FUSE_HANDLE_KILLPRIV_V2));
		}
		return false;
	}
	if (!atomic_load(&enabled))
		return false; /* the kernel kills them itself */
	switch (h->opcode) {
	case FUSE_WRITE:
		return arg_of(arg, alen, &w, sizeof(w)) && (w.write_flags & FUSE_WRITE_KILL_SUIDGID);
	case FUSE_SETATTR:
		/* a SETATTR that sets nothing is the VFS's kill that the kernel
		 * stripped: chown(f, -1, -1), or a write's file_remove_privs()
		 * (whose WRITE carries the flag too) */
		return arg_of(arg, alen, &sa, sizeof(sa)) &&
		       ((sa.valid & FATTR_KILL_SUIDGID) ||
			(sa.valid & ~(uint32_t)(FATTR_FH | FATTR_LOCKOWNER)) == 0);
	case FUSE_OPEN:
		return arg_of(arg, alen, &o, sizeof(o)) && (o.open_flags & FUSE_OPEN_KILL_SUIDGID);
	case FUSE_CREATE:
		return arg_of(arg, alen, &c, sizeof(c)) && (c.open_flags & FUSE_OPEN_KILL_SUIDGID);
	default:
		return false;
	}
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	asked = n > 0 && parse(buf, (size_t)n);
	return n;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *h = count >= 2 ? iov[0].iov_base : NULL;

	/* the INIT reply: its header, then struct fuse_init_out */
	if (h && iov[0].iov_len >= sizeof(*h) && h->error == 0 &&
	    h->unique == atomic_load(&init_unique) && atomic_load(&offered) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t)) {
		struct fuse_init_out *out = iov[1].iov_base;

		out->flags |= FUSE_HANDLE_KILLPRIV_V2;
		atomic_store(&init_unique, UINT64_MAX); /* notifications have unique 0 */
		atomic_store(&enabled, true);
		log_debug("FUSE_HANDLE_KILLPRIV_V2 on: suid and sgid are killed here");
	}
	return writev(fd, iov, count);
}

void fs_killpriv_attach(struct fuse_session *se)
{
	static const struct fuse_custom_io io = { .read = io_read, .writev = io_writev };
	int r;

	atomic_store(&init_unique, UINT64_MAX); /* no request has it: INIT not read yet */
	r = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	if (r < 0)
		log_warning_errno(r, "cannot hook /dev/fuse, the kernel asks for "
				     "security.capability before every write: %m");
}

bool fs_killpriv_asked(void)
{
	return asked;
}

bool fs_killpriv_unflagged(fuse_req_t req)
{
	/* no flag tells whether the caller has CAP_FSETID: root is taken to */
	return atomic_load(&enabled) && fuse_req_ctx(req)->uid != 0;
}
