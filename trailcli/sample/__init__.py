"""`trail sample`: seeded, realistic traffic written through the bulk path, with its ground truth."""
