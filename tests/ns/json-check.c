/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json-check: exit 0 when standard input is one JSON document, valid
 * UTF-8 throughout (json-c, strict); else say where it is not, exit 1.
 */
#include <stdio.h>
#include <stdlib.h>

#include <json-c/json.h>

int main(void)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = NULL;
	enum json_tokener_error err = json_tokener_continue;
	char buf[65536];
	size_t n, start = 0; /* of the chunk parsed last */

	if (!tok)
		return 1;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0) {
		o = json_tokener_parse_ex(tok, buf, (int)n);
		err = json_tokener_get_error(tok);
		if (err != json_tokener_continue)
			break;
		start += n;
	}
	if (err == json_tokener_continue)
		fprintf(stderr, "json-check: the input ends inside a JSON value\n");
	else if (!o || err != json_tokener_success)
		fprintf(stderr, "json-check: not valid JSON at byte %zu: %s\n",
			start + json_tokener_get_parse_end(tok), json_tokener_error_desc(err));
	json_object_put(o);
	json_tokener_free(tok);
	return o && err == json_tokener_success ? 0 : 1;
}
