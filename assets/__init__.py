"""Shipped data (machine beam data, stopping powers, HLUT), read through importlib.resources."""
