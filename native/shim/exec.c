/*
 * modprobe of a module built into the emulated kernel.
 *
 * Tools that bind devices load the driver first: driverctl runs `/sbin/modprobe -q vfio-pci`
 * unless /sys/module/<name> exists, and scripts run `modprobe vfio-pci`. The emulated kernel has
 * vfio, vfio-pci and iommufd built in, and modprobe of a built-in module does nothing and
 * succeeds; but the host's modprobe looks in the host's /lib/modules (absent in containers, and
 * knowing nothing of the emulated kernel). So an exec of modprobe that only asks to load
 * built-in modules ends the process with status 0, as that modprobe would have; any other
 * modprobe (another module, removal, an option not listed) is exec'd as asked.
 */
#define _GNU_SOURCE
#include <string.h>
#include <unistd.h>

#include "real.h"
#include "transport.h"

/* The modules the emulated kernel is built with, by their module names (dashes as '_'). */
static const char *const builtin_modules[] = {"vfio", "vfio_pci", "vfio_pci_core", "iommufd"};

/* Options that do not change what loading a built-in module does. */
static const char *const harmless_options[] = {
	"-q", "--quiet", "-v", "--verbose", "-b", "--use-blacklist", "-s", "--syslog", "-a", "--all",
};

static int is_modprobe(const char *path)
{
	return strcmp(path, "/sbin/modprobe") == 0 || strcmp(path, "/usr/sbin/modprobe") == 0 ||
	       strcmp(path, "/bin/modprobe") == 0 || strcmp(path, "/usr/bin/modprobe") == 0;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

/* Whether name ("vfio-pci" or "vfio_pci") is built in; dashes and underscores are one. */
static int builtin(const char *name)
{
	char norm[64];
	size_t len = strlen(name);
	if (len == 0 || len >= sizeof norm)
		return 0;
	for (size_t i = 0; i <= len; i++)
		norm[i] = name[i] == '-' ? '_' : name[i];
	return in_list(norm, builtin_modules, sizeof builtin_modules / sizeof *builtin_modules);
}

/* argv asks modprobe only to load built-in modules: harmless options, then one module name (or
 * several with -a/--all), and no module parameters. */
static int loads_builtin_only(char *const argv[])
{
	int all = 0, names = 0;
	if (argv == NULL || argv[0] == NULL)
		return 0;
	for (int i = 1; argv[i] != NULL; i++) {
		const char *arg = argv[i];
		if (arg[0] == '-') {
			if (names > 0 ||
			    !in_list(arg, harmless_options,
				     sizeof harmless_options / sizeof *harmless_options))
				return 0;
			if (strcmp(arg, "-a") == 0 || strcmp(arg, "--all") == 0)
				all = 1;
			continue;
		}
		if ((names > 0 && !all) || !builtin(arg))
			return 0;
		names++;
	}
	return names > 0;
}

/* Ends the process as modprobe would if the exec is modprobe loading built-in modules only. */
static void serve_modprobe(const char *path, char *const argv[])
{
	if (path != NULL && is_modprobe(path) && shim_active() && loads_builtin_only(argv))
		_exit(0);
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	serve_modprobe(path, argv);
	return REAL(execve)(path, argv, envp);
}

EXPORT int execv(const char *path, char *const argv[])
{
	serve_modprobe(path, argv);
	return REAL(execv)(path, argv);
}
