class PipelineError(Exception):
    """A failure the user can act on: the CLI prints it as one line and exits with status 1."""
