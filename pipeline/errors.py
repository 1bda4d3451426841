"""The one exception type for failures a user caused and can fix."""


class PipelineError(Exception):
  """A user-fixable failure. Its message is one line: what, where, and how to fix it.

  Entry points print it without a traceback and exit non-zero.
  """
