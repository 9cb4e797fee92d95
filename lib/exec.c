/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "mntcr/mntcr.h"
#include "tree.h"
