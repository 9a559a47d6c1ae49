"""Kennel's deploy tooling: images, AWS resources, and the local stack."""
