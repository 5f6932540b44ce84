"""Adversarial cases: every input a user (or a received results folder) can give, each tried against
the README's promises. One module per kind of input; add a case with every new input caviar takes."""
