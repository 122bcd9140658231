"""Patch-based inference for stock TFLM: the graph rewrite (rewrite), its stage/region analysis (stage),
the split/grid search (search), bit-exactness verification (verify), and the object-API writer (schema)."""
