# Deny models whose recorded accuracy is below a floor. Applies only when the producer recorded
# an accuracy (the dev.wasinfer.accuracy annotation); a model without one passes this policy.
# Floor: data.wasinfer.settings.min_accuracy (default 0.5 — a classifier barely better than a
# coin toss is almost certainly a broken export, not a model anyone meant to ship).
package wasinfer.accuracy

import rego.v1

default min_accuracy := 0.5

min_accuracy := data.wasinfer.settings.min_accuracy

deny contains msg if {
	input.accuracy != null
	input.accuracy < min_accuracy
	msg := sprintf("accuracy %v is below the floor of %v", [input.accuracy, min_accuracy])
}

warn contains "no accuracy recorded (dev.wasinfer.accuracy); the accuracy floor was not checked" if {
	input.accuracy == null
}
