/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mntcr show: the mount tree of a process or an image, as a findmnt-like
 * tree (libsmartcols), as findmnt's JSON, or as /proc/PID/mountinfo lines.
 *
 * Table: TARGET SOURCE FSTYPE OPTIONS PROPAGATION KEY. TARGET carries the
 * marks "(covered by PATH)" and "(hidden)"; SOURCE is "source[/root]" for a
 * mount of a subdirectory (findmnt's notation); KEY is the superblock key
 * MAJ:MIN of an external superblock (restore --external KEY=PATH), empty
 * for an owned one. JSON has the same keys, a plain "target", plus
 * "covered-by" and "hidden". --all adds ID PARENT MAJ:MIN FSROOT SB NODE.
 * Children are listed by mountpoint; mounts on one path in attach order.
 *
 * A tree of several namespaces (dump --pid A --pid B) is shown namespace
 * by namespace: in the table, a line "namespace K (id ID, pids P...)", its
 * processes, then its tree; in mountinfo, a line "# namespace K", then its
 * lines. In JSON, one list of filesystems with the namespace roots side by
 * side and a "namespace" key in each, then top-level "namespaces" and
 * "processes" lists (also for one namespace when the tree has processes).
 * The processes of a tree of one namespace follow its table, a line each:
 * "process PID: root ROOT, cwd CWD".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libsmartcols.h>
#include <locale.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "utf8.h"

enum show_format {
	FORMAT_TREE,
	FORMAT_JSON,
	FORMAT_MOUNTINFO,
};

enum {
	COL_TARGET,
	COL_SOURCE,
	COL_FSTYPE,
	COL_OPTIONS,
	COL_PROPAGATION,
	COL_KEY,
	COL_COVERED_BY, /* JSON only: the table marks TARGET instead */
	COL_HIDDEN,     /* JSON only */
	COL_NAMESPACE,  /* JSON of several namespaces only: the table has a line per namespace */
	COL_ID,         /* --all from here on */
	COL_PARENT,
	COL_MAJMIN,
	COL_FSROOT,
	COL_SB,
	COL_NODE,
	N_COLS,
};

enum col_when {
	COL_ALWAYS,
	COL_JSON,
	COL_JSON_NS,
	COL_ALL,
};

static const struct {
	const char *name;
	double whint;
	int flags;
	int json_type;
	enum col_when when;
} columns[N_COLS] = {
	[COL_TARGET] = { "TARGET", 0.3, SCOLS_FL_TREE, SCOLS_JSON_STRING, COL_ALWAYS },
	[COL_SOURCE] = { "SOURCE", 0.25, 0, SCOLS_JSON_STRING, COL_ALWAYS },
	[COL_FSTYPE] = { "FSTYPE", 0.1, SCOLS_FL_TRUNC, SCOLS_JSON_STRING, COL_ALWAYS },
	[COL_OPTIONS] = { "OPTIONS", 0.1, SCOLS_FL_TRUNC, SCOLS_JSON_STRING, COL_ALWAYS },
	[COL_PROPAGATION] = { "PROPAGATION", 0.1, 0, SCOLS_JSON_STRING, COL_ALWAYS },
	[COL_KEY] = { "KEY", 5, 0, SCOLS_JSON_STRING, COL_ALWAYS },
	[COL_COVERED_BY] = { "COVERED-BY", 0.1, 0, SCOLS_JSON_STRING, COL_JSON },
	[COL_HIDDEN] = { "HIDDEN", 5, 0, SCOLS_JSON_BOOLEAN, COL_JSON },
	[COL_NAMESPACE] = { "NAMESPACE", 3, SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, COL_JSON_NS },
	[COL_ID] = { "ID", 5, SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, COL_ALL },
	[COL_PARENT] = { "PARENT", 5, SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER, COL_ALL },
	[COL_MAJMIN] = { "MAJ:MIN", 6, 0, SCOLS_JSON_STRING, COL_ALL },
	[COL_FSROOT] = { "FSROOT", 0.1, SCOLS_FL_TRUNC, SCOLS_JSON_STRING, COL_ALL },
	[COL_SB] = { "SB", 8, 0, SCOLS_JSON_STRING, COL_ALL },
	[COL_NODE] = { "NODE", 4, 0, SCOLS_JSON_STRING, COL_ALL },
};

static void show_usage(FILE *f)
{
	fprintf(f, "Usage: mntcr show (--pid PID... | --image FILE) [--json | --mountinfo] [--all]\n"
		   "       mntcr show --image FILE --content [--json]\n"
		   "Print the mount tree of a process or of an image (FILE '-' = standard input).\n"
		   "\n"
		   "  -p, --pid PID      the mount namespace of process PID (repeated: the\n"
		   "                     namespaces of several, each once, and the processes)\n"
		   "  -i, --image FILE   a namespace saved by 'mntcr dump'\n"
		   "  -J, --json         findmnt's JSON: {\"filesystems\": [...]}\n"
		   "  -m, --mountinfo    /proc/PID/mountinfo lines ('findmnt -F FILE' reads them)\n"
		   "  -a, --all          all columns: also ID PARENT MAJ:MIN FSROOT SB NODE\n"
		   "  -c, --content      the image's filesystem content instead: per superblock,\n"
		   "                     its members (FILES), the size of its regular files\n"
		   "                     (BYTES) and the paths it covers (ROOTS)\n"
		   "  -h, --help         show this help\n"
		   "\n"
		   "TARGET marks '(covered by PATH)' for a mount that another mount hides and\n"
		   "'(hidden)' for a mount below one. KEY is the superblock key MAJ:MIN of an\n"
		   "external superblock, for 'mntcr restore --external KEY=PATH'; empty when the\n"
		   "superblock is owned (restore creates it anew).\n"
		   "\n"
		   "An image of several namespaces is shown one namespace after the other, each\n"
		   "with its processes' roots and working directories.\n");
}

/* -------------------------------------------------------------------------- */
/* Values */

/* PROPAGATION with mountinfo's group numbers: shared:N, master:M, shared:N,master:M, private. */
static int format_propagation(const struct mntcr_mount *m, char *buf, size_t size)
{
	uint64_t shared = mntcr_mount_shared(m), master = mntcr_mount_master(m);
	uint64_t from = mntcr_mount_propagate_from(m);
	size_t len = 0;
	int n = 0;

	buf[0] = 0;
	if (shared && master)
		n = snprintf(buf, size, "shared:%" PRIu64 ",master:%" PRIu64, shared, master);
	else if (shared)
		n = snprintf(buf, size, "shared:%" PRIu64, shared);
	else if (master)
		n = snprintf(buf, size, "master:%" PRIu64, master);
	if (n < 0 || (size_t)n >= size)
		return -ENOBUFS;
	len = (size_t)n;
	if (from) {
		n = snprintf(buf + len, size - len, ",propagate_from:%" PRIu64, from);
		if (n < 0 || (size_t)n >= size - len)
			return -ENOBUFS;
		len += (size_t)n;
	}
	if (mntcr_mount_unbindable(m)) {
		n = snprintf(buf + len, size - len, "%sunbindable", len ? "," : "");
		if (n < 0 || (size_t)n >= size - len)
			return -ENOBUFS;
		len += (size_t)n;
	}
	if (len == 0)
		snprintf(buf, size, "private");
	return 0;
}

static const char *mount_sb_options(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	const struct mntcr_sb *sb = mntcr_tree_sb(t, mntcr_mount_sb(m));
	const char *o = mntcr_mount_sb_options(m);

	if (!o && sb)
		o = mntcr_sb_options(sb);
	return o ? o : "";
}

/*
 * findmnt's OPTIONS: the per-mount options, then the superblock's without
 * its "rw" (and without "ro" when the mount is read-only anyway).
 */
static char *format_options(const struct mntcr_tree *t, const struct mntcr_mount *m)
{
	const char *so = mount_sb_options(t, m);
	char attr[256];
	char *buf, *o;
	bool ro;
	int n;

	n = mntcr_attr_format(mntcr_mount_attr(m), attr, sizeof(attr));
	if (n < 0)
		return NULL;
	ro = strncmp(attr, "ro", 2) == 0 && (attr[2] == 0 || attr[2] == ',');
	buf = malloc((size_t)n + strlen(so) + 2);
	if (!buf)
		return NULL;
	o = stpcpy(buf, attr);
	for (const char *p = so; *p;) {
		const char *e = strchrnul(p, ',');
		size_t len = (size_t)(e - p);

		if (len > 0 && !(len == 2 && strncmp(p, "rw", 2) == 0) &&
		    !(ro && len == 2 && strncmp(p, "ro", 2) == 0)) {
			*o++ = ',';
			memcpy(o, p, len);
			o += len;
		}
		p = *e ? e + 1 : e;
	}
	*o = 0;
	return buf;
}

static const char *mount_source(const struct mntcr_mount *m)
{
	const char *s = mntcr_mount_source(m);

	return s ? s : "none";
}

/* The external superblock's key, "" when owned. */
static void format_key(const struct mntcr_tree *t, const struct mntcr_mount *m, char *buf,
		       size_t size)
{
	const struct mntcr_sb *sb = mntcr_tree_sb(t, mntcr_mount_sb(m));
	unsigned maj, min;

	buf[0] = 0;
	if (!sb || mntcr_sb_owned(sb))
		return;
	mntcr_sb_dev(sb, &maj, &min);
	snprintf(buf, size, "%u:%u", maj, min);
}

/* -------------------------------------------------------------------------- */
/* Walking in display order */

struct kid {
	const char *mountpoint;
	size_t pos, idx;
};

static int cmp_kid(const void *x, const void *y)
{
	const struct kid *a = x, *b = y;
	int c = strcmp(a->mountpoint, b->mountpoint);

	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* -------------------------------------------------------------------------- */
/* Table and JSON */

/*
 * s as util-linux's tables show it, in valid UTF-8 (json: the table shows
 * it so itself): bytes that are not UTF-8 as \xHH and a backslash before
 * an "x" as \x5c. libsmartcols passes such bytes through into JSON.
 */
static int display_text(char **s, bool json)
{
	char *e = NULL;
	int r;

	if (!json || (utf8_valid(*s) && !strstr(*s, "\\x")))
		return 0;
	r = utf8_escape(*s, UTF8_DISPLAY, &e);
	if (r < 0)
		return r;
	free(*s);
	*s = e;
	return 0;
}

/* Cell col takes s (freed here on failure). */
static int cell_take(struct libscols_line *ln, size_t col, char *s, bool json)
{
	int r = display_text(&s, json);

	/* refer: the line frees it */
	if (r < 0 || scols_line_refer_data(ln, col, s) < 0) {
		free(s);
		return r < 0 ? r : -ENOMEM;
	}
	return 0;
}

static int set_cell(struct libscols_line *ln, int col, const int *colmap, const char *data, bool json)
{
	char *s;

	if (colmap[col] < 0 || !data)
		return 0;
	s = strdup(data);
	return s ? cell_take(ln, (size_t)colmap[col], s, json) : -ENOMEM;
}

static int fill_line(const struct mntcr_tree *t, size_t idx, struct libscols_line *ln,
		     const int *colmap, bool json)
{
	const struct mntcr_mount *m = mntcr_tree_mount(t, idx);
	const char *mp = mntcr_mount_mountpoint(m), *root = mntcr_mount_root(m);
	size_t cov = mntcr_mount_covered_by(m), parent = mntcr_mount_parent(m);
	const char *cov_path = NULL, *node_name;
	char *target = NULL, *source = NULL, *options = NULL;
	char prop[256], key[32], num[32], majmin[32], ns[32];
	unsigned maj, min;
	char node;
	int r;

	if (cov != MNTCR_NONE)
		cov_path = mntcr_mount_mountpoint(mntcr_tree_mount(t, cov));

	/* TARGET: the path; in the table with the covered/hidden mark */
	if (!json && cov_path)
		r = asprintf(&target, "%s (covered by %s)", mp, cov_path);
	else if (!json && mntcr_mount_hidden(m))
		r = asprintf(&target, "%s (hidden)", mp);
	else
		r = asprintf(&target, "%s", mp);
	if (r < 0) {
		target = NULL;
		r = -ENOMEM;
		goto out;
	}
	/* SOURCE: findmnt prints a subdirectory mount as "source[/dir]" */
	if (strcmp(root, "/") == 0)
		r = asprintf(&source, "%s", mount_source(m));
	else
		r = asprintf(&source, "%s[%s]", mount_source(m), root);
	if (r < 0) {
		source = NULL;
		r = -ENOMEM;
		goto out;
	}
	options = format_options(t, m);
	if (!options) {
		r = -ENOMEM;
		goto out;
	}
	r = format_propagation(m, prop, sizeof(prop));
	if (r < 0)
		goto out;
	format_key(t, m, key, sizeof(key));

	if ((r = set_cell(ln, COL_TARGET, colmap, target, json)) < 0 ||
	    (r = set_cell(ln, COL_SOURCE, colmap, source, json)) < 0 ||
	    (r = set_cell(ln, COL_FSTYPE, colmap, mntcr_mount_fstype(m), json)) < 0 ||
	    (r = set_cell(ln, COL_OPTIONS, colmap, options, json)) < 0 ||
	    (r = set_cell(ln, COL_PROPAGATION, colmap, prop, json)) < 0 ||
	    (r = set_cell(ln, COL_KEY, colmap, key[0] ? key : NULL, json)) < 0 ||
	    (r = set_cell(ln, COL_COVERED_BY, colmap, cov_path, json)) < 0 ||
	    (r = set_cell(ln, COL_HIDDEN, colmap, mntcr_mount_hidden(m) ? "1" : "0", json)) < 0)
		goto out;
	snprintf(ns, sizeof(ns), "%zu", mntcr_mount_ns(m));
	if ((r = set_cell(ln, COL_NAMESPACE, colmap, ns, json)) < 0)
		goto out;

	snprintf(num, sizeof(num), "%" PRIu64, mntcr_mount_id(m));
	if ((r = set_cell(ln, COL_ID, colmap, num, json)) < 0)
		goto out;
	if (parent != MNTCR_NONE)
		snprintf(num, sizeof(num), "%" PRIu64, mntcr_mount_id(mntcr_tree_mount(t, parent)));
	else
		snprintf(num, sizeof(num), "%" PRIu64, mntcr_mount_parent_id(m));
	if ((r = set_cell(ln, COL_PARENT, colmap, num, json)) < 0)
		goto out;
	mntcr_mount_dev(m, &maj, &min);
	snprintf(majmin, sizeof(majmin), "%u:%u", maj, min);
	node = mntcr_mount_type(m);
	node_name = node == 'd' ? "dir" : node == 'f' ? "file" : NULL;
	if ((r = set_cell(ln, COL_MAJMIN, colmap, majmin, json)) < 0 ||
	    (r = set_cell(ln, COL_FSROOT, colmap, root, json)) < 0 ||
	    (r = set_cell(ln, COL_SB, colmap, key[0] ? "external" : "owned", json)) < 0 ||
	    (r = set_cell(ln, COL_NODE, colmap, node_name, json)) < 0)
		goto out;
	r = 0;
out:
	free(target);
	free(source);
	free(options);
	return r;
}

struct pending {
	size_t idx;
	struct libscols_line *parent;
};

/*
 * The tree of namespace ns, or (MNTCR_NONE) of all of them side by side,
 * with a NAMESPACE column in JSON when there are several. Printed to
 * stdout, or to *ret_str when given (NULL when there is no mount).
 */
static int print_table(const struct mntcr_tree *t, bool json, bool all, size_t ns, char **ret_str)
{
	struct libscols_table *tb = NULL;
	struct pending *stack = NULL;
	struct kid *kids = NULL;
	size_t n = mntcr_tree_n_mounts(t), n_stack = 0, n_ns = mntcr_tree_n_namespaces(t);
	size_t first = ns == MNTCR_NONE ? 0 : ns, end = ns == MNTCR_NONE ? n_ns : ns + 1;
	bool ns_col = json && ns == MNTCR_NONE && n_ns > 1;
	int colmap[N_COLS], ncols = 0, r = 0;

	if (ret_str)
		*ret_str = NULL;
	if (n == 0 || first >= n_ns)
		return 0;
	stack = malloc(n * sizeof(*stack));
	kids = malloc(n * sizeof(*kids));
	tb = scols_new_table();
	if (!stack || !kids || !tb) {
		r = -ENOMEM;
		goto out;
	}
	scols_table_set_name(tb, "filesystems");
	if (json)
		scols_table_enable_json(tb, 1);
	for (int c = 0; c < N_COLS; c++) {
		struct libscols_column *cl;

		colmap[c] = -1;
		if ((columns[c].when == COL_JSON && !json) || (columns[c].when == COL_ALL && !all) ||
		    (columns[c].when == COL_JSON_NS && !ns_col))
			continue;
		cl = scols_table_new_column(tb, columns[c].name, columns[c].whint,
					    columns[c].flags);
		if (!cl) {
			r = -ENOMEM;
			goto out;
		}
		if (json)
			scols_column_set_json_type(cl, columns[c].json_type);
		colmap[c] = ncols++;
	}

	/* the roots pushed backwards too: namespace after namespace */
	for (size_t k = end; k > first; k--)
		if (mntcr_tree_ns_root(t, k - 1) != MNTCR_NONE)
			stack[n_stack++] = (struct pending){ .idx = mntcr_tree_ns_root(t, k - 1),
							     .parent = NULL };
	while (n_stack > 0) {
		struct pending p = stack[--n_stack];
		const struct mntcr_mount *m = mntcr_tree_mount(t, p.idx);
		size_t nk = mntcr_mount_n_children(m);
		struct libscols_line *ln = scols_table_new_line(tb, p.parent);

		if (!ln) {
			r = -ENOMEM;
			goto out;
		}
		r = fill_line(t, p.idx, ln, colmap, json);
		if (r < 0)
			goto out;
		for (size_t k = 0; k < nk; k++) {
			size_t c = mntcr_mount_child(t, m, k);
			const char *mp = mntcr_mount_mountpoint(mntcr_tree_mount(t, c));

			kids[k] = (struct kid){ .mountpoint = mp, .pos = k, .idx = c };
		}
		qsort(kids, nk, sizeof(*kids), cmp_kid);
		/* pushed backwards: popped, and so printed, in path order */
		for (size_t k = nk; k > 0; k--)
			stack[n_stack++] = (struct pending){ .idx = kids[k - 1].idx, .parent = ln };
	}
	if (ret_str)
		r = scols_print_table_to_string(tb, ret_str) < 0 ? -ENOMEM : 0;
	else
		r = scols_print_table(tb) < 0 ? -EIO : 0;
out:
	scols_unref_table(tb);
	free(stack);
	free(kids);
	return r;
}

/* -------------------------------------------------------------------------- */
/* Namespaces and processes */

/* A path on a line of its own: control characters and backslashes as \ooo. */
static void put_escaped(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c == 0x7f || c == '\\')
			fprintf(f, "\\%03o", c);
		else
			fputc(c, f);
	}
}

/* "namespace 1 (id 4026532178, pids 1234 1240)"; what is unknown left out. */
static void print_ns_header(const struct mntcr_tree *t, size_t ns)
{
	uint64_t id = mntcr_tree_ns_orig_id(t, ns);
	bool paren = false, pids = false;

	printf("namespace %zu", ns);
	if (id) {
		printf(" (id %" PRIu64, id);
		paren = true;
	}
	for (size_t i = 0; i < mntcr_tree_n_processes(t); i++) {
		size_t pns;
		pid_t pid;

		if (mntcr_tree_process(t, i, &pid, &pns, NULL, NULL) < 0 || pns != ns)
			continue;
		if (!pids)
			printf("%spids", paren ? ", " : " (");
		printf(" %d", (int)pid);
		paren = pids = true;
	}
	printf("%s\n", paren ? ")" : "");
}

/* "process 1234: root /, cwd /home" for each process of namespace ns (MNTCR_NONE: all). */
static void print_processes(const struct mntcr_tree *t, size_t ns)
{
	for (size_t i = 0; i < mntcr_tree_n_processes(t); i++) {
		const char *root, *cwd;
		size_t pns;
		pid_t pid;

		if (mntcr_tree_process(t, i, &pid, &pns, &root, &cwd) < 0 ||
		    (ns != MNTCR_NONE && pns != ns))
			continue;
		printf("process %d: root ", (int)pid);
		put_escaped(stdout, root);
		printf(", cwd ");
		put_escaped(stdout, cwd);
		putchar('\n');
	}
}

/* s as a JSON string, in valid UTF-8 as the table's cells (display_text). */
static void put_json_string(FILE *f, const char *s)
{
	_cleanup_free_ char *esc = s ? strdup(s) : NULL;

	if (esc && display_text(&esc, true) == 0)
		s = esc;
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/*
 * libsmartcols prints {"filesystems": [...]}\n: the namespaces and the
 * processes go into that object, after the list, in its indentation.
 */
static int print_json_forest(const struct mntcr_tree *t, bool all)
{
	char *table = NULL;
	size_t len;
	int r;

	r = print_table(t, true, all, MNTCR_NONE, &table);
	if (r < 0)
		return r;
	len = table ? strlen(table) : 0;
	while (len > 0 && (table[len - 1] == '\n' || table[len - 1] == ' '))
		len--;
	if (len > 0 && table[len - 1] == '}') {
		len--;
		while (len > 0 && (table[len - 1] == '\n' || table[len - 1] == ' '))
			len--;
		fwrite(table, 1, len, stdout);
	} else
		printf("{\n   \"filesystems\": []");
	free(table);

	printf(",\n   \"namespaces\": [");
	for (size_t k = 0; k < mntcr_tree_n_namespaces(t); k++) {
		const char *sep = "";

		printf("%s\n      {\n         \"namespace\": %zu,\n         \"id\": %" PRIu64
		       ",\n         \"pids\": [",
		       k ? "," : "", k, mntcr_tree_ns_orig_id(t, k));
		for (size_t i = 0; i < mntcr_tree_n_processes(t); i++) {
			size_t pns;
			pid_t pid;

			if (mntcr_tree_process(t, i, &pid, &pns, NULL, NULL) < 0 || pns != k)
				continue;
			printf("%s%d", sep, (int)pid);
			sep = ", ";
		}
		printf("]\n      }");
	}
	printf("\n   ],\n   \"processes\": [");
	for (size_t i = 0; i < mntcr_tree_n_processes(t); i++) {
		const char *root, *cwd;
		size_t pns;
		pid_t pid;

		if (mntcr_tree_process(t, i, &pid, &pns, &root, &cwd) < 0)
			continue;
		printf("%s\n      {\n         \"pid\": %d,\n         \"namespace\": %zu,\n"
		       "         \"root\": ",
		       i ? "," : "", (int)pid, pns);
		put_json_string(stdout, root);
		printf(",\n         \"cwd\": ");
		put_json_string(stdout, cwd);
		printf("\n      }");
	}
	printf("%s]\n}\n", mntcr_tree_n_processes(t) ? "\n   " : "");
	return 0;
}

/* The table of each namespace in turn, under its header; or one namespace's as it always was. */
static int print_tree(const struct mntcr_tree *t, bool all)
{
	size_t n_ns = mntcr_tree_n_namespaces(t);
	int r = 0;

	if (n_ns <= 1) {
		r = print_table(t, false, all, 0, NULL);
		if (r >= 0)
			print_processes(t, MNTCR_NONE);
		return r;
	}
	for (size_t k = 0; k < n_ns && r >= 0; k++) {
		if (k > 0)
			putchar('\n');
		print_ns_header(t, k);
		print_processes(t, k);
		r = print_table(t, false, all, k, NULL);
	}
	return r;
}

/* -------------------------------------------------------------------------- */
/* mountinfo */

/* What /proc/PID/mountinfo shows as a mount's id: the 32-bit id when known. */
static uint64_t mountinfo_id(const struct mntcr_mount *m)
{
	uint32_t old = mntcr_mount_old_id(m);

	return old ? old : mntcr_mount_id(m);
}

/* The kernel's mangling (fs/proc_namespace.c): space, tab, newline, backslash as \ooo. */
static void put_mangled(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\\')
			fprintf(f, "\\%03o", (unsigned char)*s);
		else
			fputc(*s, f);
	}
}

static const struct mntcr_tree *sort_tree; /* qsort has no user data argument */

static int cmp_mountinfo_id(const void *x, const void *y)
{
	uint64_t a = mountinfo_id(mntcr_tree_mount(sort_tree, *(const size_t *)x));
	uint64_t b = mountinfo_id(mntcr_tree_mount(sort_tree, *(const size_t *)y));

	return a < b ? -1 : a > b;
}

/*
 *  (1) id (2) parent id (3) major:minor (4) root (5) mount point (6) per-mount
 *  options (7) optional fields (8) "-" (9) fstype (10) source (11) sb options
 *
 * In id order, like the kernel. The mounts of namespace ns only, or
 * (MNTCR_NONE) all of them.
 */
static int print_mountinfo_ns(const struct mntcr_tree *t, size_t ns)
{
	size_t n_mounts = mntcr_tree_n_mounts(t), n = 0;
	size_t *order = malloc((n_mounts ? n_mounts : 1) * sizeof(size_t));

	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < n_mounts; i++)
		if (ns == MNTCR_NONE || mntcr_mount_ns(mntcr_tree_mount(t, i)) == ns)
			order[n++] = i;
	sort_tree = t;
	qsort(order, n, sizeof(size_t), cmp_mountinfo_id);
	sort_tree = NULL;

	for (size_t k = 0; k < n; k++) {
		const struct mntcr_mount *m = mntcr_tree_mount(t, order[k]);
		size_t p = mntcr_mount_parent(m);
		uint64_t parent_id;
		unsigned maj, min;
		char attr[256];

		if (p != MNTCR_NONE)
			parent_id = mountinfo_id(mntcr_tree_mount(t, p));
		else if (mntcr_mount_old_id(m) && mntcr_mount_old_id(m) != mntcr_mount_id(m))
			/* 64-bit ids (statmount): parent_id is one of those; show the root's */
			parent_id = mntcr_mount_old_id(m);
		else
			parent_id = mntcr_mount_parent_id(m);
		mntcr_mount_dev(m, &maj, &min);
		if (mntcr_attr_format(mntcr_mount_attr(m), attr, sizeof(attr)) < 0) {
			free(order);
			return -ENOBUFS;
		}

		printf("%" PRIu64 " %" PRIu64 " %u:%u ", mountinfo_id(m), parent_id, maj, min);
		put_mangled(stdout, mntcr_mount_root(m));
		putchar(' ');
		put_mangled(stdout, mntcr_mount_mountpoint(m));
		printf(" %s", attr);
		if (mntcr_mount_shared(m))
			printf(" shared:%" PRIu64, mntcr_mount_shared(m));
		if (mntcr_mount_master(m))
			printf(" master:%" PRIu64, mntcr_mount_master(m));
		if (mntcr_mount_propagate_from(m))
			printf(" propagate_from:%" PRIu64, mntcr_mount_propagate_from(m));
		if (mntcr_mount_unbindable(m))
			printf(" unbindable");
		printf(" - ");
		put_mangled(stdout, mntcr_mount_fstype(m));
		putchar(' ');
		put_mangled(stdout, mount_source(m));
		putchar(' ');
		put_mangled(stdout, mount_sb_options(t, m));
		putchar('\n');
	}
	free(order);
	return 0;
}

/* Several namespaces: each one's lines after a line "# namespace K". */
static int print_mountinfo(const struct mntcr_tree *t)
{
	size_t n_ns = mntcr_tree_n_namespaces(t);
	int r = 0;

	if (n_ns <= 1)
		return print_mountinfo_ns(t, MNTCR_NONE);
	for (size_t k = 0; k < n_ns && r >= 0; k++) {
		printf("# namespace %zu\n", k);
		r = print_mountinfo_ns(t, k);
	}
	return r;
}

/* -------------------------------------------------------------------------- */
/* --content: what an image holds of each superblock's files */

static int content_cell(struct libscols_line *ln, bool json, size_t col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int content_cell(struct libscols_line *ln, bool json, size_t col, const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	return cell_take(ln, col, s, json);
}

static int print_content(const struct mntcr_image *img, bool json)
{
	static const struct {
		const char *name;
		double whint;
		int flags, json_type;
	} cols[] = {
		{ "SB", 3, SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER },
		{ "MAJ:MIN", 7, 0, SCOLS_JSON_STRING },
		{ "FSTYPE", 6, 0, SCOLS_JSON_STRING },
		{ "SOURCE", 0.2, 0, SCOLS_JSON_STRING },
		{ "FILES", 7, SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER },
		{ "BYTES", 10, SCOLS_FL_RIGHT, SCOLS_JSON_NUMBER },
		{ "ROOTS", 0.3, 0, SCOLS_JSON_STRING },
	};
	const struct mntcr_tree *t = mntcr_image_tree(img);
	struct libscols_table *tb = scols_new_table();
	int r = 0;

	if (!tb)
		return -ENOMEM;
	scols_table_set_name(tb, "content");
	if (json)
		scols_table_enable_json(tb, 1);
	for (size_t c = 0; c < sizeof(cols) / sizeof(cols[0]); c++) {
		struct libscols_column *cl =
			scols_table_new_column(tb, cols[c].name, cols[c].whint, cols[c].flags);

		if (!cl) {
			r = -ENOMEM;
			goto out;
		}
		if (json)
			scols_column_set_json_type(cl, cols[c].json_type);
	}
	for (size_t s = 0; s < mntcr_tree_n_sbs(t) && r >= 0; s++) {
		const struct mntcr_sb *sb = mntcr_tree_sb(t, s);
		struct libscols_line *ln;
		uint64_t files, bytes;
		unsigned maj, min;
		char *roots = NULL;
		size_t len = 0;
		FILE *f;

		if (mntcr_image_content_stats(img, s, &files, &bytes) < 0)
			continue;
		ln = scols_table_new_line(tb, NULL);
		f = open_memstream(&roots, &len);
		if (!ln || !f) {
			if (f)
				fclose(f);
			free(roots);
			r = -ENOMEM;
			break;
		}
		for (size_t k = 0; k < mntcr_image_content_n_roots(img, s); k++)
			fprintf(f, "%s%s", k ? " " : "", mntcr_image_content_root(img, s, k));
		fclose(f);
		mntcr_sb_dev(sb, &maj, &min);
		if ((r = content_cell(ln, json, 0, "%zu", s)) < 0 ||
		    (r = content_cell(ln, json, 1, "%u:%u", maj, min)) < 0 ||
		    (r = content_cell(ln, json, 2, "%s", mntcr_sb_fstype(sb))) < 0 ||
		    (r = content_cell(ln, json, 3, "%s",
				      mntcr_sb_source(sb) ? mntcr_sb_source(sb) : "none")) < 0 ||
		    (r = content_cell(ln, json, 4, "%" PRIu64, files)) < 0 ||
		    (r = content_cell(ln, json, 5, "%" PRIu64, bytes)) < 0 ||
		    (r = content_cell(ln, json, 6, "%s", roots ? roots : "")) < 0) {
			free(roots);
			break;
		}
		free(roots);
	}
	if (r >= 0)
		r = scols_print_table(tb) < 0 ? -EIO : 0;
out:
	scols_unref_table(tb);
	return r;
}

/* The whole image is read (the content counted and checked), then its content listed. */
static int show_content(const char *file, bool json)
{
	struct mntcr_image *img = NULL;
	int fd, r, ret = EXIT_OK;

	setlocale(LC_ALL, "");
	fd = strcmp(file, "-") == 0 ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		cli_error("Failed to open image %s: %s", file, strerror(errno));
		return EXIT_BAD_IMAGE;
	}
	r = mntcr_image_open(fd, &img);
	if (r == 0)
		r = mntcr_image_finish(img);
	if (r < 0)
		ret = cli_image_error(file, r);
	else {
		r = print_content(img, json);
		if (r >= 0 && (fflush(stdout) != 0 || ferror(stdout)))
			r = -EIO;
		if (r < 0)
			ret = cli_error("Failed to print the content: %s", strerror(-r));
	}
	mntcr_image_free(img);
	if (fd != STDIN_FILENO)
		close(fd);
	return ret;
}

/* -------------------------------------------------------------------------- */

int cmd_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ "image", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'J' },
		{ "mountinfo", no_argument, NULL, 'm' },
		{ "all", no_argument, NULL, 'a' },
		{ "content", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{},
	};
	struct mntcr_tree *t = NULL;
	enum show_format format = FORMAT_TREE;
	const char *image = NULL;
	bool all = false, have_pid = false, json = false, mountinfo = false, content = false;
	_cleanup_free_ pid_t *pids = NULL;
	size_t n_pids = 0;
	pid_t pid = 0;
	int c, r, ret = EXIT_OK;

	while ((c = getopt_long(argc, argv, "p:i:Jmach", opts, NULL)) >= 0) {
		switch (c) {
		case 'p':
			if (!cli_parse_pid(optarg, &pid)) {
				cli_error("Invalid pid '%s'", optarg);
				return EXIT_USAGE;
			}
			{
				pid_t *np = realloc(pids, (n_pids + 1) * sizeof(*pids));

				if (!np)
					return cli_error("Out of memory");
				pids = np;
				pids[n_pids++] = pid;
			}
			have_pid = true;
			break;
		case 'i':
			image = optarg;
			break;
		case 'J':
			json = true;
			break;
		case 'm':
			mountinfo = true;
			break;
		case 'a':
			all = true;
			break;
		case 'c':
			content = true;
			break;
		case 'h':
			show_usage(stdout);
			return EXIT_OK;
		default:
			show_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		cli_error("Unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	if (have_pid == !!image) {
		cli_error(have_pid ? "Give either --pid or --image, not both"
				   : "Either --pid or --image is required");
		return EXIT_USAGE;
	}
	if (json && mountinfo) {
		cli_error("Give either --json or --mountinfo, not both");
		return EXIT_USAGE;
	}
	if (mountinfo && all) {
		cli_error("Option --all applies to the tree and --json only");
		return EXIT_USAGE;
	}
	if (content && (have_pid || mountinfo || all)) {
		cli_error("Option --content applies to --image, with or without --json");
		return EXIT_USAGE;
	}
	format = json ? FORMAT_JSON : mountinfo ? FORMAT_MOUNTINFO : FORMAT_TREE;
	if (content)
		return show_content(image, json);
	/* libsmartcols draws the tree with line characters only in a UTF-8 locale */
	setlocale(LC_ALL, "");

	/* Several --pid: their namespaces (each once) and the processes, as dump reads them. */
	if (have_pid) {
		r = n_pids == 1 ? mntcr_tree_read_pid(pids[0], 0, &t) : mntcr_tree_read_pids(pids, n_pids, 0, &t);
		if (r < 0)
			return cli_pids_error(pids, n_pids, r);
	} else if (cli_load_image(image, &t, &ret) < 0)
		return ret;

	if (format == FORMAT_MOUNTINFO)
		r = print_mountinfo(t);
	else if (format == FORMAT_JSON && mntcr_tree_n_namespaces(t) <= 1 &&
		 mntcr_tree_n_processes(t) == 0)
		r = print_table(t, true, all, 0, NULL);
	else if (format == FORMAT_JSON)
		r = print_json_forest(t, all);
	else
		r = print_tree(t, all);
	if (r >= 0 && (fflush(stdout) != 0 || ferror(stdout)))
		r = -EIO;
	if (r < 0) {
		cli_error("Failed to print the mount tree: %s", strerror(-r));
		ret = EXIT_FAIL;
	}
	mntcr_tree_free(t);
	return ret;
}
