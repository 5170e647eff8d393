"""Task ids: batchdeps' readable `Family(param=value)` and Luigi's `Family_values_hash`.

batchdeps names a task `Family(param=value, ...)` (significant parameters, in declaration
order). `luigi_task_id()` computes the form Luigi 3 gives the same task, for pipelines
whose output paths are built from `task_id` (batchdeps.luigi uses it), so that switching
does not rebuild everything under new names.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

#: Luigi's form, as documented by its `task_id_str`: how many parameters (by sorted name)
#: give their value to the readable part, how much of each value, and of the hash.
LUIGI_ID_PARAMS = 3
LUIGI_ID_VALUE_CHARS = 16
LUIGI_ID_HASH_CHARS = 10
_NOT_WORD = re.compile(r"[^A-Za-z0-9_]")


def luigi_task_id(family: str, str_params: Mapping[str, str]) -> str:
    """Luigi's task id of `family` with these significant parameters, as strings.

    `str_params` are the values as Luigi serialises them (Luigi writes `True` for a bool
    and `["a", "b"]` for a list, batchdeps `true` and `["a","b"]`: the caller passes
    Luigi's strings). The id is the family, the first characters of the values of the
    first parameters by name (other characters than letters, digits and `_` made `_`), and
    the start of the MD5 of the parameters as compact JSON with sorted keys.
    """
    canonical = json.dumps(dict(str_params), separators=(",", ":"), sort_keys=True)
    digest = hashlib.md5(canonical.encode("utf-8"), usedforsecurity=False).hexdigest()
    names = sorted(str_params)[:LUIGI_ID_PARAMS]
    summary = _NOT_WORD.sub("_", "_".join(str_params[n][:LUIGI_ID_VALUE_CHARS] for n in names))
    return f"{family}_{summary}_{digest[:LUIGI_ID_HASH_CHARS]}"
