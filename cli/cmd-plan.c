/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cli.h"

int cmd_plan(int argc, char **argv)
{
	return cli_error("Not implemented yet");
}
