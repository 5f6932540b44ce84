"""Examples to copy: trainers a job names by module path (`caviar.examples.digits_cnn:DigitsCNN`), so
Ray workers import them from any folder. Each needs its own extra (PyTorch: `pip install 'caviar[torch]'`)."""
