# Deny formats the platform cannot run (the server runs wasinfer WebAssembly modules) and source
# models in a format we do not know, so a mislabelled artifact never reaches a node.
# Lists: data.wasinfer.settings.formats and .source_formats.
package wasinfer.format

import rego.v1

default formats := ["wasm"]

formats := data.wasinfer.settings.formats

default source_formats := ["onnx", "tflite"]

source_formats := data.wasinfer.settings.source_formats

deny contains msg if {
	not input.format in formats
	msg := sprintf("format %v is not one of the allowed formats %v", [input.format, formats])
}

deny contains msg if {
	input.source_format != null
	not input.source_format in source_formats
	msg := sprintf("source format %v is not one of %v", [input.source_format, source_formats])
}
