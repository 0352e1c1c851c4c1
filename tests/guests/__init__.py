"""C guests for the WASI-NN host: sources, the ABI header, and the build helper the tests use."""
