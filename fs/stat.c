/* SPDX-License-Identifier: MIT */
/*
 * stat.c - the attributes a live node shows, in getattr (attr.c) and in
 * every entry (lookup, readdirplus, a new node): its backing file's, less
 * the links the snapshots' farms hold (cowread.c), with the size of the
 * writes journaled but not yet applied (pending.c).
 */
#include "fs.h"

void fs_stat_fix(struct fs *fs, struct fs_inode *i, struct stat *st)
{
	fs_snap_fix_nlink(fs, st);
	fs_pending_fix_stat(i, st);
}

int fs_stat_lookup(struct fs *fs, struct fs_inode *parent, const char *name,
		   struct fuse_entry_param *e)
{
	int r = fs_inode_lookup(fs, parent, name, e);

	if (r == 0)
		fs_stat_fix(fs, (struct fs_inode *)(uintptr_t)e->ino, &e->attr);
	return r;
}
