"""Code that more than one of Kennel's deliverables runs, kept in one place: both images install this package
(the model format, model_format.py; the serving image also the strict-JSON reader, strict_json.py), bench
imports it, and the Lambda's zip and its local image copy in the modules they use (deploy/function.py)."""
