"""The command line's jobs: the demo and the paper's reproductions (Table 1, Figure 4)."""
