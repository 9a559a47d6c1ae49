"""Kennel's training container."""
