/* Answers keepalived's IPVS socket options as a kernel with an empty IPVS table would, so that
 * its checker runs on a kernel without IPVS (benchmark baseline only). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define IPVS_BASE 1152 /* IP_VS_BASE_CTL: 64 + 1024 + 64 */
#define IPVS_SET_MAX (IPVS_BASE + 15)
#define IPVS_GET_INFO (IPVS_BASE + 1)
#define IPVS_GET_MAX (IPVS_BASE + 7)

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
	static int (*real)(int, int, int, const void *, socklen_t);
	if (level == IPPROTO_IP && name >= IPVS_BASE && name <= IPVS_SET_MAX)
		return 0;
	if (!real)
		real = dlsym(RTLD_NEXT, "setsockopt");
	return real(fd, level, name, value, len);
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *len)
{
	static int (*real)(int, int, int, void *, socklen_t *);
	if (level == IPPROTO_IP && name >= IPVS_BASE && name <= IPVS_GET_MAX) {
		memset(value, 0, *len);
		if (name == IPVS_GET_INFO && *len >= 3 * sizeof(unsigned)) {
			unsigned *info = value;
			info[0] = (1 << 16) | (2 << 8) | 1; /* version 1.2.1 */
			info[1] = 4096;                      /* connection table size */
		}
		return 0;
	}
	if (!real)
		real = dlsym(RTLD_NEXT, "getsockopt");
	return real(fd, level, name, value, len);
}
