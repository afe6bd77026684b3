"""The experiments behind examples/ and the `tinygrad-norm` train, train-cnn and ics commands."""
