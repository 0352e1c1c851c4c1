# Deny models that no trusted key has verifiably signed, when data.wasinfer.settings.require_signed
# is true (default false: then an unsigned model only draws a warning). Set it in settings.json,
# or delete this file's condition on the flag to make signatures mandatory.
package wasinfer.signature

import rego.v1

default require_signed := false

require_signed := data.wasinfer.settings.require_signed

deny contains "unsigned: no trusted key has signed this model, and signatures are required" if {
	require_signed
	not input.signed
}

warn contains "unsigned: no trusted key has signed this model" if {
	not require_signed
	not input.signed
}
