/* Calls each system call named on the command line with harmless arguments
 * (each fails, or does nothing, even for root on the host) and prints
 * "<name> <errno>", 0 for success. "i386-" names go through int $0x80, the
 * 32-bit compat entry of an x86_64 kernel. Built static by the tests: the
 * busybox container has no libc of its own. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static long i386_call(long nr, long a, long b, long c)
{
	long ret;
	/* The kernel zeroes r8-r11 on the way back from int $0x80. */
	__asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "r8", "r9", "r10", "r11", "memory");
	return ret;
}

static long call(const char *name)
{
	/* KEYCTL_GET_KEYRING_ID of the session keyring, no create. */
	if (!strcmp(name, "keyctl"))
		return syscall(SYS_keyctl, 0, -3, 0);
	if (!strcmp(name, "init_module"))  /* an empty image: ENOEXEC at most */
		return syscall(SYS_init_module, NULL, 0, "");
	if (!strcmp(name, "finit_module"))
		return syscall(SYS_finit_module, -1, "", 0);
	if (!strcmp(name, "delete_module"))
		return syscall(SYS_delete_module, "osctld_test_none", O_NONBLOCK);
	if (!strcmp(name, "kexec_load"))  /* unknown flags: EINVAL at most */
		return syscall(SYS_kexec_load, 0, 0, NULL, 0x80000000UL);
	if (!strcmp(name, "kexec_file_load"))
		return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0x80000000UL);
	if (!strcmp(name, "open_by_handle_at"))
		return syscall(SYS_open_by_handle_at, -1, NULL, 0);
	if (!strcmp(name, "getpid"))
		return syscall(SYS_getpid);
	/* i386 numbers; the kernel answers -errno in eax. */
	long r = -EINVAL;
	if (!strcmp(name, "i386-keyctl"))
		r = i386_call(288, 0, -3, 0);
	else if (!strcmp(name, "i386-init_module"))
		r = i386_call(128, 0, 0, 0);
	else if (!strcmp(name, "i386-getpid"))
		r = i386_call(20, 0, 0, 0);
	if (r < 0 && r > -4096) {
		errno = -r;
		return -1;
	}
	return r;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		errno = 0;
		long r = call(argv[i]);
		printf("%s %d\n", argv[i], r < 0 ? errno : 0);
	}
	return 0;
}
