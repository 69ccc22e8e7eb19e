"""Selection operators: choose a subset of rows by their embeddings (D4 prototypes,
cluster-balanced sampling)."""
