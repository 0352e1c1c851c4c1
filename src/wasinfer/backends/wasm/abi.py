"""The constants of the module contract (docs/abi.md) that readers of modules need without the compiler."""

ABI_VERSION = 1  # modules whose every shape is fixed at compile time
RUN_TIME_SHAPES_ABI_VERSION = 2  # modules with an output whose shape each run decides (NonZero, Compress)
# modules with symbolic input dims (--input-shape MIN..MAX): the host writes each run's actual dims
SYMBOLIC_DIMS_ABI_VERSION = 3
SUPPORTED_ABI_VERSIONS = (ABI_VERSION, RUN_TIME_SHAPES_ABI_VERSION, SYMBOLIC_DIMS_ABI_VERSION)
METADATA_SECTION = "wasinfer.metadata"
