/* SPDX-License-Identifier: MIT */
/*
 * Inspecting the program upager-run is about to run (program.h): the ELF
 * headers are read from a private read-only mapping of the file, every
 * offset bounds-checked, so a truncated or hostile file reads as "nothing
 * found", never as a crash.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "program.h"

/* ---- finding it ----------------------------------------------------------- */

static int try_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EACCES;
	return access(path, X_OK) < 0 ? -errno : 0;
}

/* execvp's search: a name with a slash is used as it is; otherwise each
 * PATH entry in turn (empty = the current directory), the first that can
 * be executed winning, EACCES if one was there but could not. */
static int lookup(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH"), *p, *end;
	int err = -ENOENT, e;

	if (!*name)
		return -ENOENT;
	if (strchr(name, '/')) {
		snprintf(out, len, "%s", name);
		return try_path(out);
	}
	if (!path)
		path = "/bin:/usr/bin";
	for (p = path;; p = end + 1) {
		int dirlen;

		end = strchrnul(p, ':');
		dirlen = (int)(end - p);
		if (snprintf(out, len, "%.*s%s%s", dirlen, p,
			     dirlen ? "/" : "", name) < (int)len) {
			e = try_path(out);
			if (e == 0)
				return 0;
			if (e == -EACCES)
				err = e;
		}
		if (!*end)
			break;
	}
	if (err == -EACCES)
		return err;
	snprintf(out, len, "%s", name);
	return -ENOENT;
}

/* ---- reading the ELF file ----------------------------------------------------- */

struct image {
	const unsigned char *base;
	size_t size;
};

static const void *at(const struct image *im, uint64_t off, uint64_t len)
{
	if (off > im->size || len > im->size - off)
		return NULL;
	return im->base + off;
}

/* A NUL-terminated string at off, or NULL. */
static const char *str_at(const struct image *im, uint64_t off)
{
	const char *s = at(im, off, 1);

	return s && memchr(s, '\0', im->size - off) ? s : NULL;
}

static uint16_t host_machine(void)
{
	Elf64_Ehdr eh;
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, &eh, sizeof(eh)) : -1;

	if (fd >= 0)
		close(fd);
	return n == (ssize_t)sizeof(eh) ? eh.e_machine : EM_NONE;
}

static void program_headers(const struct image *im, const Elf64_Ehdr *eh,
			    struct program *p)
{
	p->is_static = true;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = at(im, eh->e_phoff +
					  (uint64_t)i * sizeof(*ph), sizeof(*ph));
		const char *interp;

		if (!ph || ph->p_type != PT_INTERP)
			continue;
		p->is_static = false;
		interp = at(im, ph->p_offset, ph->p_filesz);
		if (interp && ph->p_filesz)
			snprintf(p->interp, sizeof(p->interp), "%.*s",
				 (int)strnlen(interp, ph->p_filesz), interp);
	}
}

/* A section named .symtab or .dynsym that defines runtime.main. */
static bool defines_runtime_main(const struct image *im, const Elf64_Ehdr *eh,
				 const Elf64_Shdr *sh)
{
	const Elf64_Shdr *strs;

	if (sh->sh_link >= eh->e_shnum || sh->sh_entsize != sizeof(Elf64_Sym))
		return false;
	strs = at(im, eh->e_shoff + (uint64_t)sh->sh_link * sizeof(*strs),
		  sizeof(*strs));
	if (!strs)
		return false;
	for (uint64_t i = 0; i < sh->sh_size / sizeof(Elf64_Sym); i++) {
		const Elf64_Sym *sym = at(im, sh->sh_offset + i * sizeof(*sym),
					  sizeof(*sym));
		const char *name;

		if (!sym)
			return false;
		if (sym->st_name >= strs->sh_size)
			continue;
		name = str_at(im, strs->sh_offset + sym->st_name);
		if (name && strcmp(name, "runtime.main") == 0 &&
		    sym->st_shndx != SHN_UNDEF)
			return true;
	}
	return false;
}

/* Go's marks: the build info section, the build ID note (section or a
 * note named "Go"), or the runtime's main. */
static void sections(const struct image *im, const Elf64_Ehdr *eh,
		     struct program *p)
{
	const Elf64_Shdr *names;

	if (eh->e_shentsize != sizeof(Elf64_Shdr) || eh->e_shstrndx >= eh->e_shnum)
		return;
	names = at(im, eh->e_shoff + (uint64_t)eh->e_shstrndx * sizeof(*names),
		   sizeof(*names));
	for (unsigned i = 0; names && i < eh->e_shnum && !p->go; i++) {
		const Elf64_Shdr *sh = at(im, eh->e_shoff +
					  (uint64_t)i * sizeof(*sh), sizeof(*sh));
		const char *name;

		if (!sh || sh->sh_name >= names->sh_size)
			continue;
		name = str_at(im, names->sh_offset + sh->sh_name);
		if (!name)
			continue;
		if (strcmp(name, ".go.buildinfo") == 0 ||
		    strcmp(name, ".note.go.buildid") == 0) {
			p->go = true;
			snprintf(p->go_why, sizeof(p->go_why), "a %s section",
				 name);
		} else if ((sh->sh_type == SHT_SYMTAB ||
			    sh->sh_type == SHT_DYNSYM) &&
			   defines_runtime_main(im, eh, sh)) {
			p->go = true;
			snprintf(p->go_why, sizeof(p->go_why),
				 "a runtime.main symbol");
		}
	}
}

static void inspect_elf(const struct image *im, struct program *p)
{
	const Elf64_Ehdr *eh = at(im, 0, sizeof(*eh));

	p->elf = true;
	if (!eh || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_machine != host_machine() ||
	    eh->e_phentsize != sizeof(Elf64_Phdr)) {
		p->foreign = true;
		return;
	}
	program_headers(im, eh, p);
	sections(im, eh, p);
}

/* "#!/bin/sh -e" -> "/bin/sh" */
static bool shebang(const struct image *im, char *out, size_t len)
{
	const char *s = (const char *)im->base, *end = s + im->size;
	size_t n;

	if (im->size < 3 || s[0] != '#' || s[1] != '!')
		return false;
	s += 2;
	while (s < end && (*s == ' ' || *s == '\t'))
		s++;
	for (n = 0; s + n < end && s[n] != ' ' && s[n] != '\t' &&
		    s[n] != '\n' && n + 1 < len; n++)
		;
	memcpy(out, s, n);
	out[n] = '\0';
	return n > 0;
}

static bool map_file(const char *path, struct image *im)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	void *m;

	if (fd < 0)
		return false;
	if (fstat(fd, &st) < 0 || st.st_size < 4) {
		close(fd);
		return false;
	}
	m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return false;
	im->base = m;
	im->size = (size_t)st.st_size;
	return true;
}

/* Secure mode (AT_SECURE): ld.so then ignores LD_PRELOAD. */
static void check_secure(const char *path, struct program *p)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return;
	if ((st.st_mode & S_ISUID) && st.st_uid != getuid()) {
		p->secure = true;
		snprintf(p->secure_why, sizeof(p->secure_why),
			 "set-uid (to uid %u)", (unsigned)st.st_uid);
	} else if ((st.st_mode & S_ISGID) && st.st_gid != getgid()) {
		p->secure = true;
		snprintf(p->secure_why, sizeof(p->secure_why),
			 "set-gid (to gid %u)", (unsigned)st.st_gid);
	} else if (getxattr(path, "security.capability", NULL, 0) > 0) {
		p->secure = true;
		snprintf(p->secure_why, sizeof(p->secure_why),
			 "given file capabilities");
	}
}

void program_inspect(const char *name, struct program *p)
{
	struct image im;
	const char *what;

	memset(p, 0, sizeof(*p));
	p->err = lookup(name, p->path, sizeof(p->path));
	if (p->err)
		return;
	what = p->path;
	if (!map_file(what, &im))
		return;
	/* A script: what runs is its interpreter (one level, as the kernel
	 * does for an interpreter that is not itself a script). */
	if (shebang(&im, p->shebang, sizeof(p->shebang))) {
		p->script = true;
		munmap((void *)im.base, im.size);
		what = p->shebang;
		if (!map_file(what, &im))
			return;
	} else {
		check_secure(what, p);
	}
	if (memcmp(im.base, ELFMAG, SELFMAG) == 0)
		inspect_elf(&im, p);
	munmap((void *)im.base, im.size);
}

int program_report(const struct program *p, FILE *f, const char *prefix)
{
	const char *name = p->script ? p->shebang : p->path;
	int n = 0;

	if (p->err) {
		fprintf(f, "%s%s: %s\n", prefix, p->path,
			p->err == -ENOENT ? "not found (searched PATH)"
					  : strerror(-p->err));
		return 1;
	}
	if (p->secure) {
		fprintf(f, "%s%s is %s: ld.so runs it in secure mode and "
			"ignores LD_PRELOAD\n", prefix, name, p->secure_why);
		n++;
	}
	if (p->foreign) {
		fprintf(f, "%s%s is 32-bit or another machine's code: the "
			"preload library cannot be loaded into it\n", prefix,
			name);
		n++;
	}
	if (p->elf && !p->foreign && p->is_static) {
		fprintf(f, "%s%s is statically linked: no ld.so loads the "
			"preload library\n", prefix, name);
		n++;
	}
	if (p->go) {
		fprintf(f, "%s%s is a Go program (%s): its heap is the Go "
			"runtime's own, not malloc's\n", prefix, name,
			p->go_why);
		n++;
	}
	return n;
}
