"""The built-in NumPy network: layers (forward/backward pairs), optimizers, and the MLP trainer."""
