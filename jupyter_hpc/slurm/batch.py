"""The batch script of a kernel's job, rendered from a jinja2 template.

Apart from the rest of the package because it needs jinja2, which the magics on the cluster do
not have.
"""

from __future__ import annotations

import shlex

import jinja2

from .commands import checked_value, directive_word

DEFAULT_BATCH_TEMPLATE = """\
#!/bin/bash
#SBATCH --job-name={{ job_name }}
#SBATCH --output={{ output }}
{% for directive in extra_directives %}#SBATCH {{ directive }}
{% endfor %}
exec {{ remote_python | q }} {{ launcher | q }} --batch {{ request_file | q }} {{ answer_file | q }}
"""


def render_batch_script(template: str, **values: object) -> str:
    """The script for sbatch's standard input; values that would break an ``#SBATCH`` line
    are refused, the ``q`` filter shell-quotes."""
    directives = values.get("extra_directives") or []
    for directive in directives:
        checked_value("extra_directives", directive)
    for name in ("job_name", "output"):
        if name in values:
            directive_word(name, values[name])
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    environment.filters["q"] = lambda value: shlex.quote(str(value))
    return environment.from_string(template).render(**values)
