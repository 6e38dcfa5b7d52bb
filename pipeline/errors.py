class PipelineError(Exception):
    """A failure the user can act on: the CLI prints it as one line and exits with status 1."""


class Interrupted(PipelineError):
    """Ctrl-C, said with what was kept and how to go on: the CLI prints it as one line and exits with status 130."""


def listed(names, limit: int | None = None) -> str:
    """Names joined by commas for a message, quoting any a reader could not tell apart otherwise (one holding a
    comma, blank or spaced at an end, unprintable); `, …` where `limit` cuts the list."""
    names = list(names)
    shown = [name if name and name.strip() == name and "," not in name and name.isprintable() else repr(name)
             for name in map(str, names[:limit])]
    return ", ".join(shown) + (", …" if limit is not None and len(names) > limit else "")
