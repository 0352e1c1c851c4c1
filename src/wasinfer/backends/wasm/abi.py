"""The two constants of the module contract (docs/abi.md) that readers of modules need without the compiler."""

ABI_VERSION = 1
METADATA_SECTION = "wasinfer.metadata"
