"""``raycl bench quality``: every method trained at one budget on the same rows and evaluated the
same way against the same floors (``harness``), and the table made of the runs (``summary``)."""
