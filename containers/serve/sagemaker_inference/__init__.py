"""The part of the SageMaker inference toolkit's API that handler scripts import (`content_types`, `decoder`,
`encoder`, `errors`), so that an existing `code/inference.py` runs here unchanged.

Why not the toolkit itself: `sagemaker-inference` brings its MMS model server, boto3, psutil and scipy; scipy
alone would take most of the serving image's 200 MB budget, and only `decoder`'s NPZ reader uses it. These
modules keep the toolkit's names and behaviour (1.10.x) except two deliberate differences: NPZ sparse input
raises UnsupportedFormatError (no scipy), and NPY input is read with allow_pickle=False (a pickle from a
client would run code).
"""
