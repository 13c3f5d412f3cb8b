"""Pure array kernels (NumPy or CuPy): water-equivalent depth, pencil beams, influence matrices.

kernels/ is the only package that imports cupy.
"""
