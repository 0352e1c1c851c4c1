# Deny models larger than a limit (module + source model), so one push cannot fill a node's
# memory budget or the registry. Limit: data.wasinfer.settings.max_size_bytes (default 100 MiB).
package wasinfer.size

import rego.v1

default max_size_bytes := 104857600

max_size_bytes := data.wasinfer.settings.max_size_bytes

deny contains msg if {
	input.size_bytes > max_size_bytes
	msg := sprintf("model is %d bytes (module + source), over the limit of %d bytes", [input.size_bytes, max_size_bytes])
}
