"""The part of the SageMaker inference toolkit's API that handler scripts import (`content_types`, `decoder`,
`encoder`, `errors`), so that an existing `code/inference.py` runs here unchanged.

Why not the toolkit itself: `sagemaker-inference` brings its MMS model server, boto3, psutil and scipy; scipy
alone would take most of the serving image's 200 MB budget, and only `decoder`'s NPZ reader uses it. These
modules keep the toolkit's names, messages and behaviour (1.10.1) except where a client's bytes are read:
- NPZ sparse input raises UnsupportedFormatError (no scipy);
- NPY input is read with allow_pickle=False: a pickle (an object array, or any bytes that are not NPY) is a
  ValueError, where the toolkit unpickles it, which runs the client's code;
- JSON goes through Kennel's strict reader (kennel_common/strict_json.py): malformed, non-UTF-8 or hostile
  JSON (NaN, duplicate keys, too deep) is a GenericInferenceToolkitError with status 400, where the toolkit
  raises json's own error (a 500) or accepts it;
- CSV may be bytes as well as text (the toolkit's takes text only: its server decodes the body first).
The compatibility build ships the toolkit itself; tests/serve/test_toolkit_conformance.py runs one corpus
through both and holds these to be the only differences.
"""
