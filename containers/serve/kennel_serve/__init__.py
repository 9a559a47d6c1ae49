"""Kennel's serving container: the SageMaker hosting contract on FastAPI and ONNX Runtime."""
