"""Scripts that start or prepare Ladder; a package so that mypy and the tests name them alike."""
