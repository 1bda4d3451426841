"""Mobile-first TFLite build pipeline: labeled images to an int8 TFLite with metadata.

This package must stay importable without TensorFlow: the Task Library check runs
`pipeline.task_library_check` in a process where TensorFlow is deliberately absent.
"""

__version__ = "0.1.0"
