// fsprobe runs file operations given as arguments and prints one line for
// each: "OP ARGS: ok ..." or "OP ARGS: ERRNO". Tests use it to check what a
// guest can and cannot reach through its directories.
//
//	cat P | write P DATA | append P DATA | fill P BYTES | copy SRC DST
//	mkdir P | rmdir P | unlink P | rename A B | link A B | symlink TARGET P
//	readlink P | ls P | stat P | lstat P | touch P | cwd
//	spin (loops until stopped) | trap
//
// copy with "-" as SRC or DST copies stdin or to stdout, and its line goes
// to stderr then.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e) {
	switch (e) {
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case ENOTCAPABLE: return "ENOTCAPABLE";
	case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case ELOOP: return "ELOOP";
	case EROFS: return "EROFS";
	case ENOSPC: return "ENOSPC";
	case EXDEV: return "EXDEV";
	case EINVAL: return "EINVAL";
	case EBADF: return "EBADF";
	case ENOTEMPTY: return "ENOTEMPTY";
	case EMFILE: return "EMFILE";
	}
	static char buf[32];
	snprintf(buf, sizeof buf, "errno %d", e);
	return buf;
}

static int fail(void) {
	printf("%s\n", ename(errno));
	return 0;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int put(const char *path, const char *data, size_t n, int flags) {
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	if (fd < 0) return fail();
	size_t done = 0;
	while (done < n) {
		ssize_t w = write(fd, data + done, n - done);
		if (w < 0) {
			printf("%s after %zu bytes\n", ename(errno), done);
			close(fd);
			return 0;
		}
		done += w;
	}
	close(fd);
	printf("ok %zu\n", done);
	return 0;
}

static int run(int argc, char **argv, int *used) {
	const char *op = argv[0];
	int need = 2;
	if (!strcmp(op, "write") || !strcmp(op, "append") || !strcmp(op, "fill") || !strcmp(op, "copy") ||
	    !strcmp(op, "rename") || !strcmp(op, "link") || !strcmp(op, "symlink"))
		need = 3;
	if (!strcmp(op, "cwd") || !strcmp(op, "spin") || !strcmp(op, "trap")) need = 1;
	if (argc < need) {
		printf("%s: missing arguments\n", op);
		exit(2);
	}
	*used = need;
	FILE *status = stdout;
	if (!strcmp(op, "copy") && (!strcmp(argv[1], "-") || !strcmp(argv[2], "-"))) status = stderr;
	fprintf(status, "%s", op);
	for (int i = 1; i < need; i++) fprintf(status, " %s", argv[i]);
	fprintf(status, ": ");
	fflush(status);
	if (!strcmp(op, "cat")) {
		FILE *f = fopen(argv[1], "r");
		if (!f) return fail();
		printf("ok ");
		char buf[4096];
		size_t n;
		while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
		printf("\n");
		fclose(f);
	} else if (!strcmp(op, "write")) {
		return put(argv[1], argv[2], strlen(argv[2]), O_TRUNC);
	} else if (!strcmp(op, "append")) {
		return put(argv[1], argv[2], strlen(argv[2]), O_APPEND);
	} else if (!strcmp(op, "fill")) {
		size_t n = strtoul(argv[2], 0, 10);
		char *data = malloc(n + 1);
		memset(data, 'x', n);
		put(argv[1], data, n, O_TRUNC);
		free(data);
	} else if (!strcmp(op, "copy")) {
		int in = strcmp(argv[1], "-") ? open(argv[1], O_RDONLY) : 0;
		if (in < 0) return fail();
		int out = strcmp(argv[2], "-") ? open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644) : 1;
		if (out < 0) return fail();
		static char buf[1 << 16];
		ssize_t n;
		size_t total = 0;
		while ((n = read(in, buf, sizeof buf)) > 0) {
			for (ssize_t done = 0; done < n;) {
				ssize_t w = write(out, buf + done, n - done);
				if (w < 0) {
					fprintf(status, "%s after %zu bytes\n", ename(errno), total + done);
					return 0;
				}
				done += w;
			}
			total += n;
		}
		if (n < 0) return fail();
		if (in) close(in);
		if (out != 1) close(out);
		fprintf(status, "ok %zu\n", total);
	} else if (!strcmp(op, "mkdir")) {
		if (mkdir(argv[1], 0755)) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "rmdir")) {
		if (rmdir(argv[1])) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "unlink")) {
		if (unlink(argv[1])) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "rename")) {
		if (rename(argv[1], argv[2])) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "link")) {
		if (link(argv[1], argv[2])) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "symlink")) {
		if (symlink(argv[1], argv[2])) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "readlink")) {
		char buf[4096];
		ssize_t n = readlink(argv[1], buf, sizeof buf - 1);
		if (n < 0) return fail();
		buf[n] = 0;
		printf("ok %s\n", buf);
	} else if (!strcmp(op, "ls")) {
		DIR *d = opendir(argv[1]);
		if (!d) return fail();
		char *names[1024];
		int n = 0;
		struct dirent *de;
		while ((de = readdir(d)) && n < 1024) names[n++] = strdup(de->d_name);
		closedir(d);
		qsort(names, n, sizeof names[0], cmp);
		printf("ok");
		for (int i = 0; i < n; i++) printf(" %s", names[i]);
		printf("\n");
	} else if (!strcmp(op, "stat") || !strcmp(op, "lstat")) {
		struct stat st;
		if ((op[0] == 's' ? stat : lstat)(argv[1], &st)) return fail();
		const char *t = S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : S_ISLNK(st.st_mode) ? "link" : "other";
		printf("ok %s %lld\n", t, (long long)st.st_size);
	} else if (!strcmp(op, "touch")) {
		struct timespec ts[2] = {{1000000000, 0}, {1000000000, 0}};
		if (utimensat(AT_FDCWD, argv[1], ts, 0)) return fail();
		printf("ok\n");
	} else if (!strcmp(op, "spin")) {
		fflush(stdout);
		for (volatile unsigned i = 0;; i++) {
		}
	} else if (!strcmp(op, "trap")) {
		fflush(stdout);
		__builtin_trap();
	} else if (!strcmp(op, "cwd")) {
		char buf[4096];
		if (!getcwd(buf, sizeof buf)) return fail();
		printf("ok %s\n", buf);
	} else {
		printf("unknown operation\n");
		exit(2);
	}
	return 0;
}

int main(int argc, char **argv) {
	for (int i = 1; i < argc;) {
		int used = 0;
		run(argc - i, argv + i, &used);
		fflush(stdout);
		i += used;
	}
	return 0;
}
