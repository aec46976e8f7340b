"""report.md, tables, curves and image grids of a run, made from its results.json alone (one module per family;
`common` holds the markdown tables, mean ± std cells, curves and grids they share)."""
