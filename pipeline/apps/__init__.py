"""The app runtimes a shipped model must work in, each run the way an app would run it.

- `task_library.py`: TFLite Task Library's ImageClassifier (in this project's environment,
  in a subprocess where TensorFlow is blocked: their native types clash);
- `mediapipe_tasks.py`: MediaPipe Tasks' ImageClassifier (in its own environment,
  `.venv-mediapipe`: MediaPipe needs absl-py 2, tensorflow-model-optimization pins 1.x);
- `child.py`: what both child processes share (command line, JSON answer, one-line errors);
- `runtimes.py`: starts either one in its subprocesses and reads back their answers;
- `check.py`: both on the same images, compared with the LiteRT interpreter.

The child modules import nothing but the standard library, numpy (to read a pixel file) and
their runtime, so this package must stay importable without TensorFlow or LiteRT.
"""
