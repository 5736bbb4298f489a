"""The LRA harness: data, training, measurement, results and command lines."""
